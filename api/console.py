"""The web console at ``/``."""

from __future__ import annotations

from litestar import Response, get

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Colonnade</title></head>
<body><h1>Colonnade</h1>
<p>SQL over Parquet and Delta Lake. Try <a href="/api/tables">/api/tables</a>,
<code>/api/sql?q=SELECT 42</code>, or the API reference at <a href="/schema">/schema</a>.</p>
</body></html>"""

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@get("/", include_in_schema=False)
async def index() -> Response:
    return Response(_PAGE, media_type="text/html", headers=SECURITY_HEADERS)
