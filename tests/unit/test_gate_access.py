"""Tool access: registry status, override -> policy -> default deny, restrictions, URL tricks."""

from __future__ import annotations

import pytest

from clawguard.core.gate import access, subjects

TOOLS = [
    access.Tool("http.request"),
    access.Tool("shell.exec"),
    access.Tool("old.tool", "deprecated", reason="superseded", replacement="new.tool"),
    access.Tool("dead.tool", "archived"),
    access.Tool("no.policy"),
]
POLICIES = [
    access.ToolPolicy(
        "tp_http",
        "http.request",
        True,
        allowed_domains=("api.example.com", "Example.ORG."),
        max_response_size_kb=1024,
    ),
    access.ToolPolicy("tp_shell", "shell.exec", False),
    access.ToolPolicy("tp_old", "old.tool", True),
    access.ToolPolicy("tp_dead", "dead.tool", True),
    access.ToolPolicy("tp_ghost", "not.registered", True),
]
OVERRIDES = [
    access.RoleOverride("ro_dev_shell", "developer", "shell.exec", True),
    access.RoleOverride("ro_intern_shell", "intern", "shell.exec", False),
    access.RoleOverride("ro_intern_http", "intern", "http.request", False),
    access.RoleOverride("ro_ops_nopolicy", "ops", "no.policy", True),
    access.RoleOverride("ro_ops_http", "ops", "http.request", True),
]
TABLE = access.compile(TOOLS, POLICIES, OVERRIDES)
URL = {"url": "https://api.example.com/v1/x"}


def check(
    tool: str, roles: tuple[str, ...] = (), arguments: dict[str, object] | None = None
) -> access.AccessDecision:
    return access.check(TABLE, tool, arguments, subjects.Principal("a1", roles=roles))


@pytest.mark.parametrize(
    ("tool", "roles", "arguments", "decision", "decided_by", "rule_id"),
    [
        ("http.request", (), URL, "ALLOW", "tool_policy", "tp_http"),
        ("shell.exec", (), None, "BLOCK", "tool_policy", "tp_shell"),
        ("shell.exec", ("developer",), None, "ALLOW", "role_override", "ro_dev_shell"),
        # a deny among the principal's roles wins, whichever order they come in
        ("shell.exec", ("developer", "intern"), None, "BLOCK", "role_override", "ro_intern_shell"),
        ("shell.exec", ("intern", "developer"), None, "BLOCK", "role_override", "ro_intern_shell"),
        ("http.request", ("intern",), URL, "BLOCK", "role_override", "ro_intern_http"),
        ("no.policy", (), None, "BLOCK", "default", None),
        ("no.policy", ("ops",), None, "ALLOW", "role_override", "ro_ops_nopolicy"),
        ("no.policy", ("developer",), None, "BLOCK", "default", None),
        ("dead.tool", (), None, "BLOCK", "registry", None),
        ("dead.tool", ("ops",), None, "BLOCK", "registry", None),
        ("not.registered", (), None, "BLOCK", "registry", None),
        ("old.tool", (), None, "ALLOW", "tool_policy", "tp_old"),
    ],
)
def test_order(
    tool: str,
    roles: tuple[str, ...],
    arguments: dict[str, object] | None,
    decision: str,
    decided_by: str,
    rule_id: str | None,
) -> None:
    result = check(tool, roles, arguments)
    assert (result.decision, result.decided_by, result.rule_id) == (decision, decided_by, rule_id)


def test_deprecated_runs_with_a_warning() -> None:
    result = check("old.tool")
    assert result.decision == "ALLOW"
    assert result.reasons[0] == "warning: tool old.tool is deprecated (superseded); use new.tool"


def test_archived_says_so() -> None:
    assert check("dead.tool").reasons == ("tool dead.tool is archived",)


def test_max_response_size_is_an_obligation() -> None:
    assert check("http.request", arguments=URL).obligations == {"max_response_size_kb": 1024}
    assert check("old.tool").obligations == {}


def test_restrictions_apply_when_an_override_grants() -> None:
    result = check("http.request", ("ops",), {"url": "https://evil.net/"})
    assert (result.decision, result.decided_by, result.rule_id) == (
        "BLOCK",
        "tool_policy",
        "tp_http",
    )
    granted = check("http.request", ("ops",), URL)
    assert granted.decision == "ALLOW" and granted.rule_id == "ro_ops_http"
    assert granted.obligations == {"max_response_size_kb": 1024}


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com/v1/refunds",
        "http://api.example.com",
        "HTTPS://API.EXAMPLE.COM/x",
        "https://api.example.com./x",  # trailing dot
        "https://api.example.com:8443/x",  # ports are not restricted
        "https://user:pw@api.example.com/x",  # userinfo is not the host
        "https://v2.api.example.com/x",  # a subdomain
        "https://example.org/",  # listed as 'Example.ORG.'
        "https://deep.sub.example.org/?q=evil.net",
        "https://api.example.com#@evil.net",
        "https://evil.net@api.example.com/",
    ],
)
def test_allowed_urls(url: str) -> None:
    assert check("http.request", arguments={"url": url}).decision == "ALLOW", url


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com.evil.net/",  # look-alike suffix
        "https://example.com@evil.net/",  # the host is evil.net
        "https://api.example.com@evil.net/",
        "https://evil.net\\@api.example.com/",  # backslash: parsers disagree
        "https://api.example.com\\.evil.net/",
        "https://evil.net/api.example.com",
        "https://evil.net?@api.example.com",
        "https://evil.net#@api.example.com",
        "https://notapi.example.com/",  # not a subdomain of api.example.com
        "https://xexample.org/",
        "https://example.com/",  # the parent of a listed domain
        "https://api.example.com /x",  # whitespace anywhere
        " https://api.example.com/",
        "https://api.example.com/\tx",
        "https://api.example.com\n.evil.net/",
        "https://api.example.com%2eevil.net/",
        "https://api.example.com\x00.evil.net/",
        "https://api.ex\u0430mple.com/",  # Cyrillic a
        "https://api.example.com:99999/",  # not a port
        "https://api.example.com:x/",
        "ftp://api.example.com/",
        "javascript://api.example.com/",
        "api.example.com/x",  # not absolute
        "//api.example.com/x",
        "https:api.example.com",
        "https:///api.example.com",
        "https://",
        "https://[::1]/",
        "https://[::1/",
        "",
        5,
        None,
        ["https://api.example.com/"],
    ],
)
def test_refused_urls(url: object) -> None:
    arguments = {} if url is None else {"url": url}
    result = check("http.request", arguments=arguments)
    assert result.decision == "BLOCK", url
    assert result.decided_by == "tool_policy"


def test_no_arguments_with_allowed_domains_blocks() -> None:
    assert check("http.request").decision == "BLOCK"


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://User@Api.Example.COM.:443/p", "api.example.com"),
        ("http://[2001:db8::1]:80/", "2001:db8::1"),
        ("https://a.b\\c/", None),
        ("https://a b/", None),
    ],
)
def test_host_of(url: str, host: str | None) -> None:
    assert access.host_of(url) == host
