"""The model server (``tfjsfs serve``): an aiohttp application over any fsspec store.

:func:`create_app` builds the application, :func:`serve` runs it; routes, pages,
uploads, the store and the browser bridge live in the modules beside this one.
The server uses the model layer and below, never ``tfjsfs.fs`` or ``tfjsfs.cli``.
"""

from .app import create_app, serve, serve_async
from .routes import STORE_KEY

__all__ = ["STORE_KEY", "create_app", "serve", "serve_async"]
