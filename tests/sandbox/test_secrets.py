"""Known secrets: where they come from (environment, git config, credential files), the forms
they leak as, overlapping values, and the values too short or common to count."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

from codeagent.sandbox.secrets import KnownSecrets

TOKEN = "ghs_0123456789abcdefGHIJ"
OTHER = "glpat-Zyxwvutsrqponm98765"


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def environment(home: Path, **extra: str) -> dict[str, str]:
    """A hermetic environment: this home, no system config."""
    return {"HOME": str(home), "GIT_CONFIG_SYSTEM": "/dev/null", **extra}


def test_environment_secrets_are_known_and_settings_are_not():
    environ = {
        "GITHUB_TOKEN": TOKEN,
        "OPENAI_API_KEY": "sk-proj-abcdefghijklmnop",
        "LISTED": "listed-by-the-user",
        "AWS_REGION": "us-east-1",
        "CODEAGENT_MODEL": "qwen3-coder-30b-a3b",
        "SSH_AUTH_SOCK": "/tmp/ssh-agent.sock",
        "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/0/bus",
        "PIP_INDEX_URL": "https://reader:pip-password-99@pypi.example/simple",
        "PATH": "/usr/local/bin:/usr/bin",
        "SHORT_TOKEN": "abc",
    }
    known = KnownSecrets.from_environment(environ, extra_names=["listed"])
    values = {value for _, value in known.pairs}
    assert {TOKEN, "sk-proj-abcdefghijklmnop", "listed-by-the-user", "pip-password-99"} <= values
    for setting in ("us-east-1", "qwen3-coder-30b-a3b", "/tmp/ssh-agent.sock", "unix:path=/run/user/0/bus"):
        assert setting not in values
    assert "/usr/local/bin:/usr/bin" not in values and "abc" not in values
    assert known.found("pip index: https://reader:pip-password-99@pypi.example") == [
        "PIP_INDEX_URL (URL password)"
    ]


def test_encoded_forms_are_found_and_redacted():
    known = KnownSecrets.of([("GITHUB_TOKEN", TOKEN), ("DB_PASSWORD", "p@ss/w0rd+x")])
    header = f"AUTHORIZATION: basic {b64('x-access-token:' + TOKEN)}"
    text = f"{header}\nplain {b64(TOKEN)}\nurl p%40ss%2Fw0rd%2Bx\n"
    redacted = known.redact(text)
    assert TOKEN not in redacted and b64(TOKEN).rstrip("=") not in redacted
    assert "p%40ss" not in redacted
    assert "[secret:GITHUB_TOKEN (base64 x-access-token)]" in redacted
    assert "[secret:GITHUB_TOKEN (base64)]" in redacted
    assert "[secret:DB_PASSWORD (url-encoded)]" in redacted
    assert known.found(text) == [
        "GITHUB_TOKEN (base64 x-access-token)",
        "GITHUB_TOKEN (base64)",
        "DB_PASSWORD (url-encoded)",
    ]


def test_overlapping_values_leave_no_part_of_either():
    left, right = "abcdefgh12345678", "12345678zzzzzzzz"
    known = KnownSecrets.of([("LEFT_TOKEN", left), ("RIGHT_TOKEN", right), ("INNER_TOKEN", "cdefgh1234")])
    redacted = known.redact(f"<{left}zzzzzzzz> and <{right}> and <cdefgh1234>")
    assert redacted == (
        "<[secret:LEFT_TOKEN + RIGHT_TOKEN]> and <[secret:RIGHT_TOKEN]> and <[secret:INNER_TOKEN]>"
    )
    assert known.found(f"x{left}y") == ["LEFT_TOKEN"]  # the inner value adds nothing inside it


def test_short_common_and_numeric_values_are_not_secrets():
    known = KnownSecrets.of(
        [
            ("A_TOKEN", "short"),
            ("B_TOKEN", "x-access-token"),
            ("C_TOKEN", "true"),
            ("D_TOKEN", "12345678"),
            ("E_TOKEN", "  padded-secret-value \n"),
        ]
    )
    assert [value for name, value in known.pairs if "(" not in name] == ["padded-secret-value"]
    assert known.redact("short x-access-token true 12345678") == "short x-access-token true 12345678"


def test_a_multiline_key_is_matched_line_by_line():
    body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
    pem = f"-----BEGIN PRIVATE KEY-----\n{body}\nAbCdEfGhIjKlMnOpQrStUvWx\n-----END PRIVATE KEY-----\n"
    known = KnownSecrets.of([("SIGNING_KEY", pem)])
    assert known.found(f"pasted: {body}") == ["SIGNING_KEY (line)"]


def test_data_is_redacted_keys_included():
    known = KnownSecrets.of([("GITHUB_TOKEN", TOKEN)])
    data = {"summary": f"used {TOKEN}", TOKEN: [1, (f"x{TOKEN}",)], "n": 3}
    assert known.found_in(data) == ["GITHUB_TOKEN"]
    redacted = known.redact_data(data)
    assert TOKEN not in repr(redacted)
    assert redacted["n"] == 3 and redacted["[secret:GITHUB_TOKEN]"] == [1, ("x[secret:GITHUB_TOKEN]",)]


def test_repository_git_config_credentials(tmp_path: Path):
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    header = f"AUTHORIZATION: basic {b64('x-access-token:' + TOKEN)}"
    git(root, "config", "http.https://github.com/.extraheader", header)
    git(root, "config", "remote.origin.url", "https://x-access-token:ghp_remote0123456789@github.com/o/r")
    git(root, "config", "remote.origin.pushurl", f"https://{OTHER}@gitlab.com/o/r")
    git(
        root,
        "config",
        "url.https://oauth2:ghp_insteadof0123456789@github.com/.insteadOf",
        "https://github.com/",
    )
    git(root, "config", "sendemail.smtpPass", "smtp-password-1")
    git(root, "config", "credential.helper", "!f() { echo username=x; echo password=helper-secret-9; }; f")
    git(root, "config", "http.proxy", "http://proxyuser:proxy-secret-7@proxy:3128")
    known = KnownSecrets.gather(root, environment(tmp_path / "home"))
    found = dict((value, name) for name, value in known.pairs)
    extraheader = ".git/config http.https://github.com/.extraheader"
    assert found[header] == extraheader
    assert found[TOKEN] == f"{extraheader} (decoded password)"
    assert found[f"x-access-token:{TOKEN}"] == f"{extraheader} (decoded)"
    assert found["ghp_remote0123456789"] == ".git/config remote.origin.url (URL password)"
    assert found[OTHER] == ".git/config remote.origin.pushurl (URL user)"
    assert (
        found["ghp_insteadof0123456789"] == ".git/config url.https://***@github.com/.insteadof (URL password)"
    )
    assert found["smtp-password-1"] == ".git/config sendemail.smtppass"
    assert found["helper-secret-9"] == ".git/config credential.helper (password)"
    assert found["proxy-secret-7"] == ".git/config http.proxy (URL password)"
    assert "x-access-token" not in found and "oauth2" not in found
    assert not any(value in name for name in known.names for value in found)  # names never hold values


def test_included_files_env_config_and_credential_stores(tmp_path: Path):
    root, home = tmp_path / "repo", tmp_path / "home"
    root.mkdir()
    (home / ".config" / "gh").mkdir(parents=True)
    git(root, "init", "-q")
    included = tmp_path / "git-credentials-1234.config"  # actions/checkout v6 keeps its header here
    included.write_text(
        f'[http "https://github.com/"]\n\textraheader = AUTHORIZATION: basic {b64("x-access-token:" + TOKEN)}\n'
    )
    git(root, "config", f"includeIf.gitdir:{root}/.git.path", str(included))
    (home / ".git-credentials").write_text("https://alice:store-secret-123@github.com\n")
    (home / ".netrc").write_text("machine github.com login bob password netrc-secret-456\n")
    (home / ".config" / "gh" / "hosts.yml").write_text("github.com:\n    oauth_token: gho_ghcli0123456789\n")
    environ = environment(
        home,
        GIT_CONFIG_COUNT="1",
        GIT_CONFIG_KEY_0="http.extraHeader",
        GIT_CONFIG_VALUE_0=f"Authorization: Bearer {OTHER}",
    )
    found = {value: name for name, value in KnownSecrets.gather(root, environ).pairs}
    assert found[TOKEN].startswith(f"{included} http.https://github.com/.extraheader")
    assert found[OTHER] == "GIT_CONFIG_VALUE_0 http.extraHeader (credential)"
    assert found["store-secret-123"] == f"{home}/.git-credentials (URL password)"
    assert found["netrc-secret-456"] == f"{home}/.netrc password"
    assert found["gho_ghcli0123456789"] == f"{home}/.config/gh/hosts.yml oauth_token"


def test_a_planted_fifo_does_not_block(tmp_path: Path):
    root, home = tmp_path / "repo", tmp_path / "home"
    root.mkdir()
    home.mkdir()
    git(root, "init", "-q")
    os.mkfifo(home / ".git-credentials")
    git(root, "config", "include.path", str(home / ".git-credentials"))
    assert KnownSecrets.gather(root, environment(home)).pairs == ()


def test_credential_free_views_are_removed_when_the_process_exits(tmp_path: Path):
    config = tmp_path / "config"
    config.write_text('[remote "origin"]\n\turl = https://user:hunter2@example.com/r.git\n')
    code = (
        "import sys; from pathlib import Path; from codeagent.sandbox.gitview import view; "
        "p = view(Path(sys.argv[1])); print(p); assert 'hunter2' not in p.read_text()"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(config)], capture_output=True, text=True, check=True
    )
    shown = Path(out.stdout.strip())
    assert shown.name.endswith(".config")
    assert not shown.parent.exists()
