"""``broker entra-setup CODE``: exactly what a company's Azure admin must do, in the order of the portal.

It replaces the hand-written "set up Azure AD SSO" guides operators send today: every value in it comes
from the gateway's own config (hosts the company's routes use, its role map, its credential), so the
registration and the gateway cannot drift apart. Pure: config in, a ``Guide`` out, rendered as Markdown,
JSON or a printable HTML page. The guide holds no secret (a certificate thumbprint is public).
"""

from __future__ import annotations

import html
import json
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from broker.config.schema import MULTI_TENANT_IDS, BrokerConfig, TenantConfig
from broker.http import paths
from broker.oidc.errors import explain, explained_codes

# Entra's longest client-secret lifetime the portal offers by default; shorter is better (rotation below).
RECOMMENDED_SECRET_MONTHS = 12
PREREQUISITES = (
    "An Entra role that can register applications: **Application Developer** (or any user when "
    "*Users can register applications* is on), **Cloud Application Administrator** or **Application "
    "Administrator**.",
    "An Entra role that can grant tenant-wide admin consent and set *Assignment required*: **Cloud "
    "Application Administrator**, **Application Administrator** or **Privileged Role Administrator** "
    "(for Microsoft Graph permissions).",
)

OPTIONAL_CLAIMS = ("email", "given_name", "family_name", "login_hint", "sid")
# ID-token claims Entra adds from Token configuration > Add optional claim (learn.microsoft.com,
# "Optional claims reference"); anything else a company keeps needs a claims-mapping policy.
ENTRA_OPTIONAL_ID_CLAIMS = frozenset(
    {
        "acct", "auth_time", "ctry", "email", "family_name", "given_name", "in_corp", "ipaddr", "login_hint",
        "onprem_sid", "pwd_exp", "pwd_url", "sid", "tenant_ctry", "tenant_region_scope", "upn",
        "verified_primary_email", "verified_secondary_email", "xms_pdl", "xms_pl", "xms_tpl",
    }
)  # fmt: skip
# Emitted by the default v2.0 ID token already (nothing to add).
DEFAULT_ID_CLAIMS = frozenset({"name", "preferred_username", "oid", "tid", "roles", "groups", "sub", "ver"})
# Claims with a value only for users synced from on-premises Active Directory (Entra Connect / Cloud Sync).
ON_PREMISES_CLAIMS = frozenset(
    {
        "onprem_sid", "onpremisessamaccountname", "onpremisesdomainname", "onpremisessecurityidentifier",
        "onpremisesuserprincipalname", "netbiosname", "dnsdomainname", "onpremisesdistinguishedname",
    }
)  # fmt: skip
# Stable app-role ids: the same company and role value always produce the same GUID, so pasting the
# manifest again updates roles instead of duplicating them.
APP_ROLE_NAMESPACE = uuid.UUID("5d7f2c4e-9b1a-4c3d-8e6f-0a1b2c3d4e5f")


@dataclass
class Guide:
    """Everything the admin must set, in portal order."""

    login_code: str
    display_name: str
    tenant_id: str
    client_id: str
    supported_account_types: str
    platform: str = "Web"
    redirect_uris: list[str] = field(default_factory=list)
    front_channel_logout_url: str = ""
    warnings: list[str] = field(default_factory=list)
    credential: dict[str, str] = field(default_factory=dict)
    optional_claims: list[str] = field(default_factory=lambda: list(OPTIONAL_CLAIMS))
    groups_claim: str | None = None
    api_permissions: list[str] = field(default_factory=list)
    app_roles: list[dict[str, Any]] = field(default_factory=list)
    assignment_required: bool = False
    # require_role is off but the role map gives everyone a default role: every user of the tenant gets in
    # unless the admin turns on "Assignment required".
    assignment_recommended: bool = False
    app_name: str = ""
    sign_in_urls: list[str] = field(default_factory=list)
    prerequisites: list[str] = field(default_factory=lambda: list(PREREQUISITES))
    troubleshooting: list[dict[str, str]] = field(default_factory=list)
    # Routes of this company that accept access tokens (``api:``): what to expose and which app roles
    # client applications (daemons, scripts) are granted.
    api_audiences: list[str] = field(default_factory=list)
    api_scopes: list[str] = field(default_factory=list)
    application_roles: list[dict[str, Any]] = field(default_factory=list)
    mapped_claims: list[str] = field(default_factory=list)  # need a claims-mapping policy
    claim_warnings: list[str] = field(default_factory=list)


def _company_hosts(config: BrokerConfig, code: str) -> tuple[list[str], list[str]]:
    """Hosts the company's users reach (routes that admit or log in to this company), and wildcards."""
    public = urlsplit(config.server.public_url)
    # Routes match hosts without a port; users reach every host through the gateway's public port.
    port = f":{public.port}" if public.port else ""
    hosts: list[str] = [public.netloc]
    wildcards: list[str] = []
    for route in config.routes:
        allowed = route.allow.login_codes
        if route.auth == "public" or (allowed and code not in allowed and route.login != code):
            continue
        if "*" in route.host:
            wildcards.append(route.host)
        else:
            hosts.append(route.host + port)
    return list(dict.fromkeys(hosts)), list(dict.fromkeys(wildcards))


def certificate_thumbprint(cert_pem: bytes) -> str:
    """The SHA-1 thumbprint as the Azure portal shows it (upper-case hex)."""
    return x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA1()).hex().upper()


def build_guide(config: BrokerConfig, code: str, base_dir: Path) -> Guide:
    """The setup guide for one company (KeyError for an unknown login code)."""
    tenant: TenantConfig = config.tenants[code]
    scheme = urlsplit(config.server.public_url).scheme
    hosts, wildcards = _company_hosts(config, code)
    multi = tenant.tenant_id.lower() in MULTI_TENANT_IDS
    guide = Guide(
        login_code=code,
        display_name=tenant.display_name,
        tenant_id=tenant.tenant_id,
        client_id=tenant.client_id,
        supported_account_types="Accounts in any organizational directory (Multitenant)"
        if multi
        else "Accounts in this organizational directory only (Single tenant)",
    )
    for host in hosts:
        guide.redirect_uris.append(f"{scheme}://{host}{paths.CALLBACK}")
    for host in hosts:
        # Entra accepts a post_logout_redirect_uri only when it is registered as a redirect URI too.
        guide.redirect_uris.append(f"{scheme}://{host}{paths.LOGGED_OUT}")
    guide.front_channel_logout_url = f"{scheme}://{hosts[0]}{paths.company_frontchannel_logout(code)}"
    for wildcard in wildcards:
        guide.warnings.append(
            f"routes on {wildcard} cannot be registered (Entra has no wildcard redirect URIs): add each "
            f"host's https://HOST{paths.CALLBACK}, or send users through {hosts[0]}"
        )
    if any(len(uri) > 256 for uri in guide.redirect_uris):
        guide.warnings.append("a redirect URI is longer than Entra's 256-character limit")
    if tenant.certificate is not None:
        cert = (base_dir / tenant.certificate.cert_file).read_bytes()
        guide.credential = {
            "type": "certificate",
            "upload": tenant.certificate.cert_file,
            "thumbprint_sha1": certificate_thumbprint(cert),
        }
    else:
        guide.credential = {
            "type": "client_secret",
            "where": "the gateway's client_secret (from an env var or client_secret_file)",
        }
    guide.api_permissions = ["openid", "profile", "email", "offline_access"]
    if tenant.groups_overage == "graph":
        guide.api_permissions.append("User.Read")
    if tenant.roles.groups:
        guide.groups_claim = "Security groups (ID token, Group ID)"
    guide.app_roles = [
        {
            "allowedMemberTypes": ["User"],
            "description": f"{tenant.display_name}: broker role '{role}'",
            "displayName": value,
            "id": str(uuid.uuid5(APP_ROLE_NAMESPACE, f"{code}/{value}")),
            "isEnabled": True,
            "value": value,
        }
        for value, role in tenant.roles.app_roles.items()
    ]
    guide.assignment_required = tenant.roles.require_role
    guide.assignment_recommended = not tenant.roles.require_role and tenant.roles.default is not None
    gateway_host = urlsplit(config.server.public_url).hostname or hosts[0]
    guide.app_name = f"{gateway_host} ({tenant.display_name} sign-in)"
    public = config.server.public_url.rstrip("/")
    guide.sign_in_urls = [f"{public}{paths.company_login(code)}"] + [
        public + alias.replace("{code}", code) for alias in config.server.login_aliases
    ]
    guide.troubleshooting = [
        {"code": f"AADSTS{number}", "what": explain("", number).title, "fix": explain("", number).admin}
        for number in explained_codes()
    ]
    _add_api(guide, config, code, tenant)
    _kept_claims(guide, tenant)
    return guide


def _add_api(guide: Guide, config: BrokerConfig, code: str, tenant: TenantConfig) -> None:
    """ "Expose an API" and "App roles for applications" when routes of this company accept tokens."""
    apis = [
        r.api
        for r in config.routes
        if r.api is not None and (not r.allow.login_codes or code in r.allow.login_codes)
    ]
    guide.api_audiences = sorted({a for api in apis for a in api.audiences})
    guide.api_scopes = sorted({s for api in apis for s in api.scopes})
    guide.application_roles = [
        {
            "allowedMemberTypes": ["Application"],
            "description": f"{tenant.display_name}: applications calling the API as '{value}'",
            "displayName": value,
            "id": str(uuid.uuid5(APP_ROLE_NAMESPACE, f"{code}/app/{value}")),
            "isEnabled": True,
            "value": value,
        }
        for value in sorted({v for api in apis for v in api.app_roles})
    ]


def _kept_claims(guide: Guide, tenant: TenantConfig) -> None:
    """What the admin must add so the ID token carries every claim the company keeps."""
    for claim in tenant.keep_claims:
        if claim in DEFAULT_ID_CLAIMS or claim in guide.optional_claims:
            continue
        if claim in ENTRA_OPTIONAL_ID_CLAIMS:
            guide.optional_claims.append(claim)
        else:
            guide.mapped_claims.append(claim)
        if claim in ON_PREMISES_CLAIMS:
            guide.claim_warnings.append(
                f"claim '{claim}' has a value only for users synced from on-premises Active Directory "
                "(Entra Connect or Cloud Sync); cloud-only users arrive without it (use default(...))"
            )
    if guide.mapped_claims and not tenant.app_specific_keys:
        guide.claim_warnings.append(
            "claims from a claims-mapping policy ("
            + ", ".join(guide.mapped_claims)
            + ") make Entra sign this app's tokens with its own keys: set app_specific_keys: true for this "
            "company, or every sign-in fails (AADSTS50146 without acceptMappedClaims)"
        )


def to_json(guide: Guide) -> str:
    """The guide as JSON (for automation)."""
    return json.dumps(asdict(guide), indent=2)


def _api_steps(guide: Guide) -> list[str]:
    """The "Expose an API" and "App roles for applications" steps (none when no route accepts tokens)."""
    if not guide.api_audiences:
        return []
    uris = [a for a in guide.api_audiences if a != guide.client_id]
    steps = [
        "   **Expose an API** (routes of this company accept access tokens):",
        "   - Application ID URI: " + (", ".join(f"`{u}`" for u in uris) or f"`api://{guide.client_id}`"),
        "   - Add a scope for each of: " + (", ".join(f"`{s}`" for s in guide.api_scopes) or "(none needed)"),
        "   - **Manifest**: `accessTokenAcceptedVersion` 2 (the gateway accepts v1 and v2 tokens).",
    ]
    if guide.application_roles:
        steps += [
            "   **App roles for applications** (client credentials): create these roles, then grant them to "
            "each calling app (its **API permissions > My APIs > Application permissions**, admin consent):",
            "",
            "```json",
            json.dumps(guide.application_roles, indent=2),
            "```",
            "",
        ]
    return steps


def to_markdown(guide: Guide) -> str:
    """The guide as Markdown, numbered in the order of the Azure portal."""
    lines = [
        f"# Microsoft Entra setup for {guide.display_name} (login code `{guide.login_code}`)",
        "",
        "## Before you start",
        "",
        *[f"- {item}" for item in guide.prerequisites],
        "",
        "## Steps",
        "",
        "In the Microsoft Entra admin center (https://entra.microsoft.com):",
        "",
        "1. **App registrations > New registration**",
        f"   - Name: *{guide.app_name}* (what users see on the consent and My Apps pages)",
        f"   - Supported account types: *{guide.supported_account_types}*",
        f"   - Redirect URI: platform **{guide.platform}**, `{guide.redirect_uris[0]}`",
        "2. **Authentication** (platform Web):",
        "   - Redirect URIs (add every one):",
        *[f"     - `{uri}`" for uri in guide.redirect_uris],
        f"   - Front-channel logout URL: `{guide.front_channel_logout_url}`",
        "   - Implicit grant and hybrid flows: leave *Access tokens* and *ID tokens* **unticked** "
        "(the gateway uses the authorization code flow with PKCE).",
    ]
    for warning in guide.warnings:
        lines.append(f"   - **Warning:** {warning}")
    if guide.credential["type"] == "certificate":
        lines += [
            "3. **Certificates & secrets > Certificates > Upload certificate**: "
            f"`{guide.credential['upload']}`. The portal must then show thumbprint "
            f"`{guide.credential['thumbprint_sha1']}`.",
        ]
    else:
        lines += [
            "3. **Certificates & secrets > Client secrets > New client secret**: copy the secret's **Value** "
            "(not the Secret ID): it is shown once. Note its expiry (step 8).",
        ]
    lines += [
        "4. **Token configuration > Add optional claim** (token type ID): "
        + ", ".join(f"`{c}`" for c in guide.optional_claims)
        + " (accept the prompt to add the Microsoft Graph permissions they need).",
    ]
    if guide.groups_claim:
        lines.append(f"   - **Add groups claim**: {guide.groups_claim}.")
    if guide.mapped_claims:
        lines.append(
            "   - **Enterprise applications > (this app) > Single sign-on > Attributes & Claims** (a claims-"
            "mapping policy; directory extensions as `extn.<name>`): "
            + ", ".join(f"`{c}`" for c in guide.mapped_claims)
            + "."
        )
    lines += [f"   - **Warning:** {warning}" for warning in guide.claim_warnings]
    lines += [
        "5. **API permissions > Microsoft Graph > Delegated**: "
        + ", ".join(f"`{p}`" for p in guide.api_permissions)
        + "; then **Grant admin consent**.",
    ]
    if guide.app_roles:
        lines += [
            "6. **App roles** (or **Manifest**, key `appRoles`): create these roles; "
            "pasting this JSON keeps their ids stable:",
            "",
            "```json",
            json.dumps(guide.app_roles, indent=2),
            "```",
            "",
        ]
    lines += [
        "7. **Enterprise applications > (this app) > Properties**: *Assignment required?* "
        + _assignment(guide),
        "   Then **Users and groups**: assign people (and their app roles).",
        *_api_steps(guide),
        *_send_back(guide),
        "",
        "## Where users sign in",
        "",
        *[f"- `{url}`" for url in guide.sign_in_urls],
        "",
        "## Troubleshooting",
        "",
        "The gateway's error page shows the AADSTS code and a correlation ID; the Entra sign-in logs "
        "(**Enterprise applications > Sign-in logs**) show the same attempt.",
        "New registrations can take a few minutes to work everywhere (AADSTS700016 until then).",
        "",
        "| Code | What the user sees | What to change |",
        "|---|---|---|",
        *[f"| {t['code']} | {t['what']} | {t['fix']} |" for t in guide.troubleshooting],
    ]
    return "\n".join(lines) + "\n"


def _assignment(guide: Guide) -> str:
    if guide.assignment_required:
        return "**Yes** (users without a role are refused)."
    if guide.assignment_recommended:
        return (
            "**Yes, recommended**: the gateway gives every signed-in user of this tenant a default role, "
            "so without assignment *everyone* in the directory gets in."
        )
    return "your choice."


def _send_back(guide: Guide) -> list[str]:
    """Step 8: the IDs are already in the config; only a client secret travels, and never by plain e-mail."""
    ids = (
        f"Check on the app's **Overview** that the Application (client) ID is `{guide.client_id}` and the "
        f"Directory (tenant) ID is `{guide.tenant_id}` (they are already in the gateway's config: send them "
        "only if they differ)."
    )
    if guide.credential["type"] == "certificate":
        return [f"8. Send back nothing new. {ids}"]
    return [
        f"8. Send back only the client secret's **Value** and its **expiry date**. {ids}",
        "   - Send the secret through a one-time secret link or your password manager's sharing, never in "
        "plain e-mail or chat; the operator stores it in the gateway's secret store (an environment "
        "variable or `client_secret_file`), never in the YAML.",
        f"   - Choose an expiry of at most {RECOMMENDED_SECRET_MONTHS} months and put a reminder in both "
        "calendars a month before it.",
        "   - Rotation without downtime: create a second secret while the first is still valid, send it, "
        "wait until the operator confirms the gateway uses it (sign-ins keep working), then delete the "
        "old one. An expired secret stops every sign-in (AADSTS7000222).",
    ]


def to_html(guide: Guide) -> str:
    """The guide as a printable HTML page (the Markdown through a CommonMark parser, raw HTML off)."""
    from markdown_it import MarkdownIt

    # "commonmark" with html off: a '<' in a display name or URL is text, never markup; tables on.
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(to_markdown(guide))
    title = html.escape(f"Microsoft Entra setup for {guide.display_name}")
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>\n'
        f"<style>{_PRINT_CSS}</style></head>\n<body>\n{body}</body></html>\n"
    )


_PRINT_CSS = (
    "body{font:15px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#1b1b1f}"
    "code{font:13px ui-monospace,monospace;background:#f2f2f5;padding:0 .2em;overflow-wrap:anywhere}"
    "pre{background:#f2f2f5;padding:.8rem;overflow-x:auto;white-space:pre-wrap}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .5rem;vertical-align:top}"
    "li{margin:.2rem 0}@media print{body{margin:0;max-width:none}pre,tr{break-inside:avoid}}"
)


def render(guide: Guide, form: str) -> str:
    """The guide in ``form``: ``markdown``, ``json`` or ``html``."""
    if form == "json":
        return to_json(guide) + "\n"
    if form == "html":
        return to_html(guide)
    return to_markdown(guide)
