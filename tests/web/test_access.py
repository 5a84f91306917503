"""Staff pages follow the API's matrix: every route of the web app is listed in ``PAGES`` (or is
one of the few open or customer pages), each role opens exactly the pages whose API route is
open to it, and the navigation links only to those."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from fanli.config import Settings
from fanli.interfaces.api.app import create_app
from fanli.interfaces.api.deps import matrix, scope_for
from fanli.interfaces.web import views, views_admin, views_portal, views_work
from fanli.interfaces.web.views import PAGES
from fanli.users.actor import Actor
from fanli.users.auth import enrol_second_factor, set_password
from second_factor import fresh_code
from store.builders import PEOPLE
from store.conftest import NOW, Store, sqlite_template, store
from store.test_settlements import _form, _world

__all__ = ["sqlite_template", "store"]
PASSWORD = "correct horse battery"
# Not staff pages: sign-in, language and one's own password for anyone, the portal for customer
# users.
OPEN = {
    ("GET", "/"),
    ("GET", "/signin"),
    ("POST", "/signin"),
    ("POST", "/signout"),
    ("GET", "/lang/{code}"),
    ("GET", "/portal"),
    ("GET", "/portal/statements/{start}"),
    ("GET", "/portal/statements/{start}/pdf"),
    ("POST", "/portal/statements/{start}"),
    ("POST", "/portal/password"),
    ("GET", "/password"),  # anyone signed in: where a handed-over password is changed
}


def test_every_web_route_is_listed() -> None:
    routes = {
        (method, route.path)
        for module in (views, views_work, views_admin, views_portal)
        for route in module.router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    assert sorted(routes - set(PAGES) - OPEN) == []
    assert sorted(set(PAGES) - routes) == []  # nothing listed that does not exist
    for listed in PAGES.values():
        for api_route in listed if isinstance(listed, tuple) else (listed,):
            assert api_route == "staff" or api_route in matrix(), api_route


# The pages without a parameter, and what each needs of the matrix.
PLAIN = sorted(path for method, path in PAGES if method == "GET" and "{" not in path)


def _opens(listed: str | tuple[str, ...], actor: Actor) -> bool:
    """Whether the matrix opens a page listed with this API route (or any of these) to actor."""
    routes = listed if isinstance(listed, tuple) else (listed,)
    return any(r == "staff" or scope_for(matrix().get(r), actor) is not None for r in routes)


def test_each_role_opens_exactly_its_pages(store: Store, tmp_path: Path) -> None:
    world = _world(store, tmp_path, _form("credit_note"))
    secrets = {}
    with store.work() as session:
        for code, _roles, _limit in PEOPLE:
            set_password(session, code, PASSWORD, actor=world["admin"], now=NOW, must_change=False)
            secrets[code] = enrol_second_factor(session, code, actor=world["admin"], now=NOW)
    settings = Settings(data_dir=tmp_path, database_url=store.engine.url.render_as_string(False))
    opened: dict[str, list[str]] = {}
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        for code, _roles, _limit in PEOPLE:
            client.cookies.clear()
            totp = fresh_code(secrets[code])
            client.post("/signin", data={"user": code, "password": PASSWORD, "totp": totp})
            actor = world[code]
            expected = [path for path in PLAIN if _opens(PAGES[("GET", path)], actor)]
            opened[code] = [path for path in PLAIN if client.get(path).status_code == 200]
            assert opened[code] == expected, code
            nav = client.get("/dashboard").text.split("</nav>")[0]
            links = re.findall(r'<a class="nav-link" href="([^"]+)"', nav)
            assert sorted(links) == expected, code  # a link for each page open, no other
            # No link on any page the role opens leads to a page it may not see.
            hrefs = {
                href
                for path in expected
                for href in re.findall(r'href="(/[^"]*)"', client.get(path).text)
                if not href.startswith(("/static/", "/lang/"))
            }
            dead = sorted(href for href in hrefs if client.get(href).status_code == 404)
            assert dead == [], code
    # What the matrix gives, spelled out for the record (a change here is a change of access).
    finance = [
        "/accruals",
        "/agreements",
        "/audit",
        "/customers",
        "/dashboard",
        "/imports",
        "/inbox",
        "/periods",
        "/policy",
        "/settlements",
        "/users",
    ]
    auditors = [page for page in finance if page != "/inbox"]
    approvers = [
        "/agreements",
        "/customers",
        "/dashboard",
        "/inbox",
        "/policy",
        "/settlements",
        "/users",
    ]
    assert opened == {
        "admin": ["/audit", "/customers", "/dashboard", "/policy", "/users"],
        "sam": [  # sales answers its customers' disputes in the inbox
            "/agreements",
            "/customers",
            "/dashboard",
            "/inbox",
            "/policy",
            "/settlements",
            "/users",
        ],
        "fay": finance,
        "fred": finance,
        "amy": approvers,
        "abe": approvers,
        "cora": finance,  # compliance reads what finance reads
        "ivan": auditors,
        "eve": auditors,
    }
