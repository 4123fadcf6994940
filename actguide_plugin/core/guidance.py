"""Plan-style guidance G_k: the first k reference actions appended to the user message (paper §3.1).

G_0 is the original prompt, unchanged. For k ≥ 1 the *last user message* gets a block: a short instruction
that this is a possibly incomplete reference plan, then one numbered line per action,
``i. <tool name>: <arguments as compact JSON>``. The system message (which carries the tool schemas) is
never touched, so the tool-call format the policy learns is the one it is evaluated with. Plan lines write ``<``,
``>``, U+2028 and U+2029 as JSON ``\\uXXXX`` escapes, so an action's text cannot forge a chat turn or a plan line
(:meth:`Action.plan_arguments`); the question is the user's prompt, unchanged at every level as at level 0 —
``actguide-preprocess`` rejects records whose question or actions carry such markup (:func:`forged_markup`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from actguide_plugin.core.actions import Action, plan_safe

Message = Mapping[str, Any]


@dataclass(frozen=True)
class GuidanceTemplate:
    """Text around the numbered plan. ``header`` precedes the list; lines follow ``line_format``."""

    header: str = (
        "\n\nReference plan (possibly incomplete): a previous successful attempt began with the tool calls "
        "below. Use them as guidance; you may need more tool calls before giving the final answer.\n"
    )
    line_format: str = "{index}. {name}: {arguments}"

    def render(self, actions: Sequence[Action]) -> str:
        lines = [
            self.line_format.format(index=i, name=plan_safe(a.name), arguments=a.plan_arguments())
            for i, a in enumerate(actions, start=1)
        ]
        return self.header + "\n".join(lines)


DEFAULT_TEMPLATE = GuidanceTemplate()


def level_from_ratio(ratio: float, num_actions: int) -> int:
    """k = ceil(r · L), clamped to [0, L]. A tiny epsilon keeps 0.3 · 10 at 3, not 4."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"guidance ratio must be in [0, 1], got {ratio}")
    return min(num_actions, max(0, math.ceil(ratio * num_actions - 1e-9)))


def guided_messages(
    messages: Sequence[Message],
    actions: Sequence[Action],
    level: int,
    template: GuidanceTemplate = DEFAULT_TEMPLATE,
) -> list[dict[str, Any]]:
    """Return the prompt at guidance level ``level`` (0 ≤ level ≤ len(actions)).

    Level 0 returns copies equal to the input messages; the input is never mutated.
    """
    if not 0 <= level <= len(actions):
        raise ValueError(f"guidance level {level} is outside [0, {len(actions)}] (number of reference actions)")
    out = [dict(m) for m in messages]
    if level == 0:
        return out
    user_idx = next((i for i in range(len(out) - 1, -1, -1) if out[i].get("role") == "user"), None)
    if user_idx is None:
        raise ValueError("cannot add guidance: the prompt has no user message")
    content = out[user_idx].get("content")
    if not isinstance(content, str):
        raise ValueError(f"cannot add guidance: user message content must be text, got {type(content).__name__}")
    out[user_idx]["content"] = content + template.render(actions[:level])
    return out


_PLAN_LINE = re.compile(r"^(\d+)\. \S")
_CHAT_MARKUP = re.compile(
    r"<\|[^\n]{0,64}?\|>"  # <|im_start|>, <|im_end|>, <|eot_id|>, <|endoftext|> (Qwen, Llama 3, Phi, ...)
    r"|<\uff5c[^\n]{0,64}?\uff5c>"  # DeepSeek's full-width bars
    r"|</?(?:start_of_turn|end_of_turn)>"  # Gemma
    r"|\[/?INST\]"  # Mistral, Llama 2
    r"|[\u2028\u2029]"  # line and paragraph separators: a line break to some renderers and tokenizers
)


def forged_markup(text: str, template: GuidanceTemplate = DEFAULT_TEMPLATE) -> str | None:
    """What in ``text`` could forge a chat turn or a plan — a chat-template control token or role marker, a line
    separator, or the guidance header — shown as ``repr``; ``None`` when there is none."""
    match = _CHAT_MARKUP.search(text)
    if match is not None:
        return repr(match.group())
    if template.header.strip() in text:
        return "the guidance header"
    return None


def _plan_lines(text: str, template: GuidanceTemplate) -> list[str]:
    """The run of consecutively numbered lines after the last guidance header (empty without one)."""
    header = template.header.strip()
    start = text.rfind(header)
    if start < 0:
        return []
    lines = []
    for line in text[start + len(header) :].lstrip("\n").split("\n"):
        match = _PLAN_LINE.match(line)
        if match is None or int(match.group(1)) != len(lines) + 1:
            break
        lines.append(line)
    return lines


def level_in_text(text: str, template: GuidanceTemplate = DEFAULT_TEMPLATE) -> int:
    """Recover the guidance level from a rendered prompt: the run of numbered lines after the header.

    Used by scripted test backends and offline analysis; returns 0 when no guidance block is present.
    """
    return len(_plan_lines(text, template))


def plan_in_text(text: str) -> list[Action]:
    """Recover the plan's actions from a prompt rendered with the default template (inverse of ``render``).

    ``text`` must end where the user message ends (no chat-template markers after the last plan line).
    """
    actions = []
    for line in _plan_lines(text, DEFAULT_TEMPLATE):
        _, _, rest = line.partition(". ")
        name, separator, arguments = rest.partition(": ")
        if not separator:
            raise ValueError(f"plan line {line!r} is not '<i>. <tool name>: <arguments as JSON>'")
        try:
            actions.append(Action(name=name, arguments=json.loads(arguments)))
        except json.JSONDecodeError as err:
            raise ValueError(f"plan line {line!r}: arguments are not JSON: {err}") from err
    return actions
