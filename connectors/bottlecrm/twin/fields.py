"""What BottleCRM accepts in a write: DRF's field cleaning as django-crm 1.35's serializers configure it.

`clean(specs, data, partial=..., checks=...)` returns the cleaned values or raises `Refusal` carrying the
400 answer the real API gives, every problem named under its field, in the serializer's field order:
`{"error": true, "errors": {"status": ["\"Open\" is not a valid choice."]}}`. The messages are DRF's and
django-crm's own (cases/serializer.py, contacts/serializer.py, common/validators.py), read from the
installed source; the e-mail check is an approximation of Django's EmailValidator.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Literal

STATUSES = ("New", "Assigned", "Pending", "Closed", "Rejected", "Duplicate")
OPEN_STATUSES = ("New", "Assigned", "Pending")
PRIORITIES = ("Low", "Normal", "High", "Urgent")
CASE_TYPES = ("Question", "Incident", "Problem")
_COUNTRY_CODES = (  # common/utils.py COUNTRIES, the codes only
    "GB AF AX AL DZ AS AD AO AI AQ AG AR AM AW AU AT AZ BS BH BD BB BY BE BZ BJ BM BT BO BA BW BV BR IO BN BG "
    "BF BI KH CM CA CV KY CF TD CL CN CX CC CO KM CG CD CK CR CI HR CU CY CZ DK DJ DM DO EC EG SV GQ ER EE ET "
    "FK FO FJ FI FR GF PF TF GA GM GE DE GH GI GR GL GD GP GU GT GG GN GW GY HT HM VA HN HK HU IS IN ID IR IQ "
    "IE IM IL IT JM JP JE JO KZ KE KI KP KR KW KG LA LV LB LS LR LY LI LT LU MO MK MG MW MY MV ML MT MH MQ MR "
    "MU YT MX FM MD MC MN ME MS MA MZ MM NA NR NP NL AN NC NZ NI NE NG NU NF MP NO OM PK PW PS PA PG PY PE PH "
    "PN PL PT PR QA RE RO RU RW BL SH KN LC MF PM VC WS SM ST SA SN RS SC SL SG SK SI SB SO ZA GS ES LK SD SR "
    "SJ SZ SE CH SY TW TJ TZ TH TL TG TK TO TT TN TR TM TC TV UG UA AE US UM UY UZ VU VE VN VG VI WF EH YE ZM "
    "ZW")
COUNTRIES = frozenset(_COUNTRY_CODES.split())


class Refusal(Exception):  # noqa: N818 (an answer, not a bug: DRF raises ValidationError/Http404 the same way)
    """An answer other than success, given before anything is written: `status` and its JSON `body`."""

    def __init__(self, status: int, body: Any):
        super().__init__(f"HTTP {status} {json.dumps(body)}")
        self.status, self.body = status, body


@dataclass(frozen=True)
class FieldSpec:
    kind: Literal["char", "choice", "bool", "date", "email"] = "char"
    required: bool = False
    null: bool = False
    blank: bool = False
    max_length: int | None = None
    choices: Iterable[str] = ()
    pattern: tuple[re.Pattern[str], str] | None = None


_TEXT = FieldSpec(null=True, blank=True)
_PHONE = (re.compile(r"^[\d\s\-\(\)\+\.]{7,25}$"),  # common/validators.py flexible_phone_validator
          "Enter a valid phone number (7-25 characters, digits and separators only)")
# an approximation of Django's EmailValidator (it also checks domain labels and IP literals)
_EMAIL = (re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$"), "Enter a valid email address.")
CASE_FIELDS = {  # CaseCreateSerializer, in its field order (the order of the error keys)
    "name": FieldSpec(required=True, max_length=64), "status": FieldSpec("choice", required=True, choices=STATUSES),
    "priority": FieldSpec("choice", required=True, choices=PRIORITIES),
    "case_type": FieldSpec("choice", null=True, blank=True, choices=CASE_TYPES),
    "closed_on": FieldSpec("date", null=True), "description": _TEXT, "is_active": FieldSpec("bool")}
CONTACT_FIELDS = {  # CreateContactSerializer (contacts/models.py lengths)
    "first_name": FieldSpec(required=True, max_length=255), "last_name": FieldSpec(required=True, max_length=255),
    "email": FieldSpec("email", null=True, blank=True, max_length=254, pattern=_EMAIL),
    "phone": FieldSpec(null=True, blank=True, max_length=25, pattern=_PHONE),
    "organization": replace(_TEXT, max_length=255), "title": replace(_TEXT, max_length=255),
    "address_line": replace(_TEXT, max_length=255), "city": replace(_TEXT, max_length=255),
    "state": replace(_TEXT, max_length=255), "postcode": replace(_TEXT, max_length=64),
    "country": FieldSpec("choice", null=True, blank=True, choices=COUNTRIES), "description": _TEXT,
    "is_active": FieldSpec("bool")}
_TRUE = {True, "1", "t", "T", "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"}
_FALSE = {False, "0", "f", "F", "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"}


def clean_value(spec: FieldSpec, value: Any) -> Any:
    """One field as DRF's field classes clean it; raises ValueError with the list of messages."""
    if value is None:
        if spec.null:
            return None
        raise ValueError(["This field may not be null."])
    if spec.kind == "bool":  # DRF's BooleanField: 1 == True and 0 == False in these sets
        try:
            if value in _TRUE or value in _FALSE:
                return value in _TRUE
        except TypeError:  # unhashable: a list or an object
            pass
        raise ValueError(["Must be a valid boolean."])
    if spec.kind == "choice":
        if value == "" and spec.blank:
            return ""
        if str(value) not in spec.choices:
            raise ValueError([f'"{value}" is not a valid choice.'])
        return str(value)
    if spec.kind == "date":
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}", value):
            try:
                return date(*map(int, value.split("-")))
            except ValueError:
                pass
        raise ValueError(["Date has wrong format. Use one of these formats instead: YYYY-MM-DD."])
    if str(value).strip() == "":  # CharField: blank is checked before the type, on the trimmed text
        if not spec.blank:
            raise ValueError(["This field may not be blank."])
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(["Not a valid string."])
    text, problems = str(value).strip(), []
    if spec.pattern and not spec.pattern[0].match(text):
        problems.append(spec.pattern[1])
    if spec.max_length is not None and len(text) > spec.max_length:
        problems.append(f"Ensure this field has no more than {spec.max_length} characters.")
    if problems:
        raise ValueError(problems)
    return text


def clean(specs: Mapping[str, FieldSpec], data: Any, *, partial: bool,
           checks: Mapping[str, Callable[[Any], str | None]]) -> dict[str, Any]:
    """The cleaned values of `data` (only the fields it holds, when `partial`); Refusal(400) naming every
    problem. `checks` are the serializer's `validate_<field>` methods: a message, or None when fine."""
    if not isinstance(data, dict):
        raise Refusal(400, {"error": True, "errors": {"non_field_errors": [
            f"Invalid data. Expected a dictionary, but got {type(data).__name__}."]}})
    values: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name, spec in specs.items():
        if name not in data:
            if spec.required and not partial:
                errors[name] = ["This field is required."]
            continue
        try:
            values[name] = clean_value(spec, data[name])
        except ValueError as exc:
            errors[name] = list(exc.args[0])
            continue
        check = checks.get(name)
        problem = check(values[name]) if check else None
        if problem:
            errors[name] = [problem]
    for name, check in checks.items():  # relation fields (account) are not in `specs`
        if name not in specs and name in data:
            problem = check(data[name])
            if problem:
                errors[name] = [problem]
    if errors:
        raise Refusal(400, {"error": True, "errors": errors})
    return values


def id_list(value: Any, name: str) -> list[str]:
    """common/validators.py payload_id_list: a list of ids (or a JSON list, a bare id, `{"id"}` objects); an
    error here escapes DRF's serializer, so its 400 body is the bare `{field: [...]}`."""
    if value in (None, ""):
        return []
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text) if text.startswith("[") else [text]
        except json.JSONDecodeError:
            raise Refusal(400, {name: [f"{name} must be a list of ids."]}) from None
    if not isinstance(value, (list, tuple)):
        raise Refusal(400, {name: [f"{name} must be a list of ids."]})
    ids = []
    for item in value:
        item = item.get("id") if isinstance(item, dict) else item
        if item in (None, ""):
            continue
        try:
            ids.append(str(uuid.UUID(str(item))))
        except ValueError:
            raise Refusal(400, {name: [f"'{item}' is not a valid id."]}) from None
    return ids


def canonical_id(value: Any) -> str | None:
    """The canonical form of anything `uuid.UUID` parses (upstream's `uid` path converter), else None."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None
