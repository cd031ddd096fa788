"""The web console: ``/`` serves ``static/index.html``; ``/static/…`` its ES modules and CSS.

Everything the page needs ships in ``api/static`` (no CDN, no build step), so the console works
offline and behind firewalls. The CSP allows only same-origin scripts, styles and connections:
no inline script or style exists in the page, and JavaScript styles elements through the CSSOM.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Response, get
from litestar.datastructures import CacheControlHeader
from litestar.response.base import ASGIResponse
from litestar.static_files import create_static_files_router

STATIC_DIR = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


@get("/", include_in_schema=False)
async def index() -> Response:
    # Read per request: a few KB, and an edited page shows up without a restart.
    page = (STATIC_DIR / "index.html").read_bytes()
    return Response(page, media_type="text/html", headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


async def _secure(response: ASGIResponse) -> ASGIResponse:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


# ``no-cache`` still lets the browser keep the files; it revalidates them (ETag) on each load,
# so an upgraded server never runs against stale modules.
static_files = create_static_files_router(
    path="/static",
    directories=[STATIC_DIR],
    name="console-static",
    cache_control=CacheControlHeader(no_cache=True),
    after_request=_secure,  # type: ignore[arg-type]
)
