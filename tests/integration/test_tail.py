"""Tailing a topic on the local broker."""

from __future__ import annotations

import pytest

from streams.tail import iter_messages
from streams.topics import TopicError, ensure_topics


@pytest.mark.kafka
def test_missing_topic_error_lists_existing_topics(run_settings):
    ensure_topics(run_settings)
    with pytest.raises(TopicError) as raised:
        next(iter_messages(run_settings, f"{run_settings.events_topic}.no-such-topic", idle_timeout_s=1))
    message = str(raised.value)
    assert "no-such-topic' not found" in message
    assert run_settings.events_topic in message
