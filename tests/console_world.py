"""What the console's tests share: the accounts (an operator and a viewer, with the passwords their hashes were
made from), the mapping files that hold the WMS's copy of the address for an operator's review, and values a
hostile or merely unusual system could hand the hub (markup, right-to-left text, a very long text)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from hub.http.console.auth import hash_password
from mappings import DEFAULT_DIR

OPERATOR, OPERATOR_PASSWORD = "lin", "lin-correct-horse-battery"
VIEWER, VIEWER_PASSWORD = "viewer", "viewer-staple-93"

SCRIPT_NAME = "<script>alert(1)</script>"
ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;"
IMG_TAG = '<img src=x onerror="alert(2)">'  # breaks out of an attribute too, if quotes are not escaped
ESCAPED_IMG_TAG = "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;"
ARABIC_ADDRESS = "شارع الملك فهد ١٢، الرياض"  # right to left, with Arabic-Indic digits
HEBREW_NOTE = "רחוב הרצל 5, תל אביב"
LONG_TEXT = ("The controller resets after the display flickers; " * 400)[:20_000]


def console_users(iterations: int | None = None) -> str:
    """The `[console.users.*]` tables for the operator and the viewer (TOML to append to a configuration)."""
    def hashed(password: str) -> str:
        return hash_password(password) if iterations is None else hash_password(password, iterations)

    return (f'\n[console.users.{OPERATOR}]\nrole = "operator"\npassword_hash = "{hashed(OPERATOR_PASSWORD)}"\n'
            f'[console.users.{VIEWER}]\nrole = "viewer"\npassword_hash = "{hashed(VIEWER_PASSWORD)}"\n')


def review_mappings(folder: Path) -> Path:
    """The shipped mapping files, with the WMS's copy of `customer.address` left for an operator to decide
    (`reconcile = "review"`): a drift there is reported as awaiting review, not repaired."""
    shutil.copytree(DEFAULT_DIR, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    wms = folder / "wms.toml"
    text = wms.read_text(encoding="utf-8")
    changed = re.sub(r'(\[fields\."customer\.address"\]\n(?:[^\[\n][^\n]*\n)*)', r'\1reconcile = "review"\n', text,
                     count=1)
    assert changed != text, "wms.toml has no [fields.\"customer.address\"] table to hold for review"
    wms.write_text(changed, encoding="utf-8")
    return folder
