"""Storage: schema, migrations, the embedded server, partition and policy
maintenance. Services read and write through asyncpg; migrations run through
Alembic with SQLAlchemy and psycopg."""
