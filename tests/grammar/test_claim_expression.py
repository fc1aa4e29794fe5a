"""Header expressions: every transformation on an example, and what is refused at load (issue 17)."""

from __future__ import annotations

import pytest

from broker.grammar.claim_expression import ExpressionError, Ref, Value, evaluate, parse_expression

CLAIMS: dict[str, Value] = {
    "upn": "adele@contoso.com",
    "onpremisessamaccountname": None,
    "xms_pl": ["fr", "en"],
    "extn.costCenter": "CC-42",
    "given-name": "Adele",
}
FIELDS: dict[str, Value] = {"email": "Adele.Vance@Contoso.com", "roles": ["reader", "admin"], "sub": "t:o"}


def value_of(text: str) -> Value:
    """Compile and evaluate an expression over the sample claims and fields."""
    return evaluate(parse_expression(text), lambda ref: (CLAIMS if ref.claim else FIELDS).get(ref.name))


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("claims.upn", "adele@contoso.com"),
        ("email | lower", "adele.vance@contoso.com"),
        ("claims.upn | upper", "ADELE@CONTOSO.COM"),
        ("claims.upn | strip_domain", "adele"),
        ("claims.upn | strip_domain | prefix('CONTOSO\\\\')", "CONTOSO\\adele"),
        ("claims.upn | strip_domain | suffix('@corp.local')", "adele@corp.local"),
        ("claims.upn | replace('@.*$', '@corp.local')", "adele@corp.local"),
        ("roles | first", "reader"),
        ("roles | join(';')", "reader;admin"),
        ("roles | join", "reader,admin"),
        ("claims.onpremisessamaccountname | default(claims.upn | strip_domain)", "adele"),
        ("claims.onpremisessamaccountname | default('guest')", "guest"),
        ("claims.upn | base64", "YWRlbGVAY29udG9zby5jb20="),
        ("claims.extn.costCenter", "CC-42"),
        ("claims['given-name'] | lower", "adele"),
        ("{{ claims.xms_pl | first | upper }}", "FR"),
        ("claims.missing | upper", None),
        ("sub", "t:o"),
    ],
)
def test_each_transformation(expression: str, expected: Value) -> None:
    assert value_of(expression) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("shoe_size", "unknown claim 'shoe_size'"),
        ("claims.upn | titlecase", "unknown transformation 'titlecase'"),
        ("roles | upper", "upper works on text, and this is a list"),
        ("claims.upn | prefix(claims.x)", "must be a quoted string"),
        ("claims.upn | replace('(', '')", "not a regular expression"),
        ("claims.upn | prefix", "prefix takes 1 argument(s), not 0"),
        ("__import__('os').system('id')", "not allowed in an expression"),
        ("claims.upn + 'x'", "not allowed in an expression"),
        ("claims.upn | (lambda x: x)", "after '|' comes a transformation"),
        ("claims.upn |", "not an expression"),
        ("x" * 501, "at most 500 characters"),
    ],
)
def test_refused_at_load_with_a_reason(expression: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=None) as info:
        parse_expression(expression)
    assert message in str(info.value)


def test_known_claim_kinds_are_type_checked() -> None:
    with pytest.raises(ExpressionError):
        parse_expression("claims.xms_pl | lower", {"xms_pl": "list"})
    assert isinstance(parse_expression("claims.xms_pl | first | lower", {"xms_pl": "list"}), object)


def test_a_reference_never_reads_attributes_of_python_objects() -> None:
    node = parse_expression("claims.upn.__class__")
    assert node == Ref("upn.__class__", claim=True)  # only a claim name, read from the session's claims
