"""The npm `pusher` SDK 5.3.4 against the real server: `get` for the query API, and
`webhook(...).isValid()` / `getEvents()` on the webhook posts a test receiver took (with
the key and secret of the app, and refusing a post whose body was changed)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e.conftest import NodeTools
from tests.integration.harness import Cluster
from tests.integration.pusher_client import PusherClient
from tests.integration.webhook_receiver import Receiver

KEY, SECRET, APP_ID = "npm-key", "npm-secret", "40"
SCRIPT = Path(__file__).with_name("pusher_sdk.js")


def run_sdk(node_tools: NodeTools, cluster: Cluster, **task: Any) -> dict[str, Any]:
    task = {"appId": APP_ID, "key": KEY, "secret": SECRET, "port": cluster.port, **task}
    result = subprocess.run([node_tools.node, str(SCRIPT), json.dumps(task)], text=True,
                            capture_output=True, env=node_tools.env(), timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


async def test_npm_sdk_queries_and_validates_webhooks(tmp_path: Path,
                                                      node_tools: NodeTools) -> None:
    receiver = Receiver({KEY: SECRET})
    await receiver.start()
    app = {"id": APP_ID, "key": KEY, "secret": SECRET,
           "webhooks": [{"url": receiver.url, "events": ["channel_occupied", "member_added"]}]}
    cluster = Cluster(tmp_path, apps=[app], webhook_delivery={"batch_delay": 0.05})
    try:
        ann = await PusherClient.open(cluster, key=KEY, secret=SECRET)
        bob = await PusherClient.open(cluster, key=KEY, secret=SECRET)
        await ann.subscribe("presence-npm", {"user_id": "ann"})
        await bob.subscribe("presence-npm", {"user_id": 7})
        await bob.subscribe("npm-news")
        await receiver.until(lambda r: len(r.events) == 4)
        answer = await asyncio.to_thread(run_sdk, node_tools, cluster, gets=[
            {"path": "/channels", "params": {"filter_by_prefix": "presence-",
                                             "info": "user_count"}},
            {"path": "/channels/presence-npm", "params": {"info": "subscription_count"}},
            {"path": "/channels/presence-npm/users"},
            {"path": "/channels", "params": {"info": "user_count"}},  # needs the prefix
        ], webhooks=[
            *({"headers": {k.lower(): v for k, v in post.headers.items()}, "body": post.raw}
              for post in receiver.posts),
        ])
        assert "fatal" not in answer, answer
        gets = answer["gets"]
        assert gets[0] == {"status": 200, "body": {"channels": {"presence-npm": {
            "user_count": 2}}}}
        assert gets[1] == {"status": 200, "body": {"occupied": True, "subscription_count": 2}}
        assert gets[2] == {"status": 200, "body": {"users": [{"id": "ann"}, {"id": "7"}]}}
        assert gets[3]["status"] == 400, gets[3]
        hooks = answer["webhooks"]
        assert hooks and all(hook["valid"] for hook in hooks), hooks
        assert [e for hook in hooks for e in hook["events"]] == [e for _, e in receiver.events]
        # a changed body is refused: the signature is over the exact bytes
        post = receiver.posts[0]
        forged = dict(post.body, events=[{"name": "channel_occupied", "channel": "forged"}])
        refused = await asyncio.to_thread(run_sdk, node_tools, cluster, webhooks=[
            {"headers": {k.lower(): v for k, v in post.headers.items()},
             "body": json.dumps(forged, separators=(",", ":"))}])
        assert refused["webhooks"] == [{"valid": False, "events": None}]
        await ann.close()
        await bob.close()
    finally:
        assert cluster.stop() == 0, "\n".join(cluster.log.lines[-30:])
        await receiver.stop()
        assert not receiver.invalid
