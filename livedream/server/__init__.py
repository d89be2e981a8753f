"""livedream's web app: a page and an HTTP API to dream photos and to watch and steer the live stream.

    livedream serve [--host 127.0.0.1] [--port 8000] [--source SRC] [--token T]

Starlette on uvicorn (why: see app.py). One model, loaded once, shared by the HTTP dream worker
and the live stream. The web packages are an extra (`pip install 'livedream[serve]'`), so this
package imports them only when its app is used: `from livedream.server.app import Service,
create_app`, `from livedream.server.runner import ServerThread`.
"""

from livedream.server.settings import TOKEN_ENV, ServerSettings

__all__ = ["ServerSettings", "TOKEN_ENV"]
