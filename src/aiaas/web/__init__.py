"""The web dashboard: server-rendered pages (Jinja2) over the domains' services, with a few
small ES modules for what a page cannot do alone (the drawing canvas, charts, copying a key).

``sessions.py`` holds browser sign-ins (a cookie naming a server-side session) and their CSRF
tokens; ``pages.py`` the page plumbing (templates, the route class that turns errors into pages);
``routes/`` one module per group of pages. Cookies authenticate these pages only: the API's
dependencies read the ``Authorization`` header and nothing else.
"""
