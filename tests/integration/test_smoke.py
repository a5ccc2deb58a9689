from litestar.testing import AsyncTestClient
from pymongo.asynchronous.database import AsyncDatabase


async def test_health_is_ok_when_the_database_answers(client: AsyncTestClient, db: AsyncDatabase) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["database"] == "up"
