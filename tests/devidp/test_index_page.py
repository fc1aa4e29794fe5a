"""The dev IdP's root page (linked from the README and the demo banner) lists its tenants and users."""

from __future__ import annotations

from tests.devidp.harness import DevIdpHarness
from tests.http.test_escaping import parse


async def test_the_root_page_lists_every_tenant_and_user_but_no_secret(idp: DevIdpHarness) -> None:
    async with idp.session.get(f"{idp.base}/") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        html = await resp.text()
    page = parse(html)
    for tenant in idp.config.tenants:
        assert page.shows(tenant.display_name) and page.shows(tenant.tenant_id)
        assert page.shows(f"{idp.base}/{tenant.tenant_id}/v2.0/.well-known/openid-configuration")
        for user in tenant.users:
            assert page.shows(user.name) and page.shows(user.username)
        for client in tenant.clients:
            assert not client.client_secret or client.client_secret not in html
