"""The service's own WSGI app plus a bare endpoint of the same stack for comparison.

``POST /bench/bare`` does one INSERT through the same Flask, Flask-SQLAlchemy
session and connection pool as the real endpoints, without authentication,
validation, tenancy, caller lookup or timeline: the floor the real endpoint is
measured against.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, MetaData, Table, Text, func, insert

from oncall import create_app
from oncall.extensions import db

bench_metadata = MetaData()
bench_rows = Table(
    "bench_rows",
    bench_metadata,
    Column("id", Integer, primary_key=True),
    Column("payload", Text),
    Column("created_at", DateTime(timezone=True), server_default=func.now()),
)

app = create_app()


@app.post("/bench/bare")
def bare() -> tuple[dict[str, int], int]:
    row_id = db.session.execute(
        insert(bench_rows).values(payload="call").returning(bench_rows.c.id)
    ).scalar_one()
    db.session.commit()
    return {"id": row_id}, 201
