"""The complete alerts.yaml in the README loads: documentation that cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

from connectors.notify.standalone import load_config

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_alerts_yaml_is_valid(tmp_path: Path) -> None:
    match = re.search(r"```yaml\n(# alerts\.yaml.*?)```", README.read_text(), re.S)
    assert match, "README has no alerts.yaml example"
    path = tmp_path / "alerts.yaml"
    path.write_text(match.group(1))
    env = {
        "WAREHOUSE_URL": "postgresql://reader:pw@db.internal/analytics",
        "CH_PASSWORD": "pw",
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/x",
        "HOOK_SECRET": "a-shared-secret",
        "TEAMS_WEBHOOK_URL": "https://example.webhook.office.com/webhookb2/x",
    }
    config = load_config(path, env)
    assert [a.name for a in config.alerts] == [
        "signups-dropped",
        "error-spike",
        "slow-pages",
        "daily-digest",
    ]
    assert {a.rule.type for a in config.alerts} == {"threshold", "change", "always"}
    assert set(config.channels) == {"ops-slack", "oncall-mail", "hook", "teams"}
