// Starts Swagger UI on the page's OpenAPI document. A file of its own, not an inline script, so that a
// Content-Security-Policy without 'unsafe-inline' lets it run; validatorUrl null: no badge from a remote host.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    domNode: root,
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
})();
