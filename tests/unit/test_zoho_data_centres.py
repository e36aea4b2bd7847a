"""Every data centre Zoho lists, with its accounts server and API domain, in the connector, the
template's allowed values and the guides."""

from __future__ import annotations

from pathlib import Path

from event_router.deliver.zoho.client import API_DOMAINS, DATA_CENTRES
from tests.unit.stack import TEMPLATE

DOCS = Path(__file__).resolve().parents[2] / "docs"

# Zoho's multi-DC pages as they stood on 2026-12-03 (zoho.com/accounts/protocol/oauth/multi-dc.html
# for the accounts servers, with the API domain each has, zoho.com/crm/developer/docs/api/v8/multi-dc.html):
# the value of ZohoDataCentre → (accounts server, API domain).
ZOHO_LIST = {
    "com": ("https://accounts.zoho.com", "https://www.zohoapis.com"),  # United States
    "eu": ("https://accounts.zoho.eu", "https://www.zohoapis.eu"),  # Europe
    "in": ("https://accounts.zoho.in", "https://www.zohoapis.in"),  # India
    "com.au": ("https://accounts.zoho.com.au", "https://www.zohoapis.com.au"),  # Australia
    "jp": ("https://accounts.zoho.jp", "https://www.zohoapis.jp"),  # Japan
    "com.cn": ("https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn"),  # China
    "ca": ("https://accounts.zohocloud.ca", "https://www.zohoapis.ca"),  # Canada: zohocloud.ca for accounts
    "sa": ("https://accounts.zoho.sa", "https://www.zohoapis.sa"),  # Saudi Arabia
    "uk": ("https://accounts.zoho.uk", "https://www.zohoapis.uk"),  # United Kingdom
}


def test_the_connector_knows_every_data_centre_zoho_lists_with_its_accounts_server_and_api_domain() -> None:
    assert {name: (dc.accounts, dc.api) for name, dc in DATA_CENTRES.items()} == ZOHO_LIST
    assert frozenset(api for _, api in ZOHO_LIST.values()) == API_DOMAINS


def test_the_template_allows_every_data_centre_and_nothing_else() -> None:
    allowed = TEMPLATE["Parameters"]["ZohoDataCentre"]["AllowedValues"]

    assert sorted(allowed) == sorted(["", *ZOHO_LIST])


def test_the_guides_name_every_data_centre() -> None:
    guides = (DOCS / "connect-zoho.md").read_text() + (DOCS / "deploy.md").read_text()

    for name, (accounts, _) in ZOHO_LIST.items():
        assert f"`{name}`" in guides, name
        assert accounts.removeprefix("https://") in (DOCS / "connect-zoho.md").read_text(), accounts
