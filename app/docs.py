"""The API docs page (/schema, also /schema/swagger): Swagger UI from assets vendored in app/static.

Nothing comes from a CDN, so the page works offline, and there is no inline script or style: a
Content-Security-Policy of `default-src 'self'` lets it run. scripts/vendor_swagger_ui.sh pins the npm package
swagger-ui-dist (version and integrity hash) and copies its files with their licence.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from litestar import Request, Router
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.static_files import create_static_files_router

STATIC = Path(__file__).parent / "static"
ASSETS = "docs-assets"


class OfflineSwaggerUI(OpenAPIRenderPlugin):
    def __init__(self, path: str = "/swagger") -> None:
        super().__init__(path=path)

    def receive_router(self, router: Router) -> None:
        router.register(create_static_files_router(path="/assets", directories=[STATIC], name=ASSETS))

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        def asset(name: str) -> str:
            return escape(request.app.route_reverse(ASSETS, file_path=name))

        title = escape(str(openapi_schema.get("info", {}).get("title", "API")))
        return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="{asset("swagger-ui/swagger-ui.css")}">
<link rel="stylesheet" href="{asset("docs.css")}">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{escape(self.get_openapi_json_route(request))}"></div>
<script src="{asset("swagger-ui/swagger-ui-bundle.js")}"></script>
<script src="{asset("docs.js")}"></script>
</body>
</html>
""".encode()
