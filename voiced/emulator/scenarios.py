"""Scenario files: what the emulated bot "heard" and what it answers, turn by turn.

A scenario is a TOML file validated by :class:`Scenario`. The emulator has no ASR and no LLM: an audio
turn's transcript and every reply come from the scenario. Turn selection (per connection):

- a **text** turn (``conversation.message.create``) takes the first turn whose ``keywords`` occur in the
  text (case-insensitive); else the turn at the ordered cursor when it has no keywords; else ``fallback``;
- an **audio** turn (``input_audio_buffer.complete`` or server VAD) takes the turn at the ordered cursor
  (its ``transcript`` is what the "ASR" heard), else ``fallback``.

Taking the turn at the cursor advances it; ``loop = true`` wraps it around.

Reply sentences are templates. ``{name}`` and ``{name.field.sub}`` are replaced, ``{{``/``}}`` are literal
braces; nothing is evaluated. Names: ``user_text`` (the text or transcript of the turn), ``audio_ms``
(duration of the user's audio), and the name of every tool the turn called — ``{current_time}`` is that
tool's whole output, ``{current_time.spoken}`` a field of it when the output is a JSON object, and the
whole output again when it is plain text (a real bot speaks ``"17:45"`` as it is). A field that is missing
from a JSON object renders as ``unknown``, ``null`` as ``unknown``, so a broken plugin is audible.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from voiced.emulator.faults import FaultSettings

_TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_]\w*(?:\.\w+)*)\}|[{}]")


class ScenarioError(ValueError):
    """A scenario could not be loaded. The message names the file and the offending key."""


class TemplateError(ValueError):
    """A reply template has unbalanced braces or an invalid ``{name}``."""


def check_template(template: str) -> list[str]:
    """The names a template references; raises :class:`TemplateError` on bad syntax."""
    names: list[str] = []
    for match in _TEMPLATE_TOKEN.finditer(template):
        token = match.group(0)
        if token in ("{{", "}}"):
            continue
        if match.group(1) is None:
            raise TemplateError(
                f"stray {token!r} at offset {match.start()} in {template!r} (write {token * 2} for a literal)"
            )
        names.append(match.group(1))
    return names


def _as_object(text: str) -> dict[str, Any] | str:
    """A tool output: the JSON object it holds, else the text itself (a JSON string unquoted)."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    if isinstance(parsed, dict):
        return parsed
    return parsed if isinstance(parsed, str) else text


def _lookup(path: str, values: dict[str, Any]) -> Any:
    head, *rest = path.split(".")
    value: Any = values.get(head)
    for key in rest:
        if isinstance(value, str):
            # Tool outputs are strings; their fields are reachable when they hold a JSON object, and
            # an output that is plain text ("17:45") is what a real bot would speak for any field.
            value = _as_object(value)
            if isinstance(value, str):
                return value
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _as_spoken(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def render_template(template: str, values: dict[str, Any]) -> str:
    """Fill ``template`` from ``values`` (see the module docstring). Never evaluates anything."""
    check_template(template)

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        return _as_spoken(_lookup(match.group(1), values))

    return _TEMPLATE_TOKEN.sub(replace, template)


DEFAULT_PROLOGUE = "Hello! I am the voiced emulator. What can I do for you?"
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


def prologue_turn(text: str) -> Turn:
    """The turn that speaks ``text`` (a prologue) as it is: one reply sentence per sentence, no templates."""
    literal = text.replace("{", "{{").replace("}", "}}")
    sentences = [s for s in _SENTENCE_END.split(literal.strip()) if s.strip()]
    return Turn(reply=sentences or [literal])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolCallSpec(_Strict):
    """One device-side plugin call the bot makes (protocol.md §4.3)."""

    name: str = Field(min_length=1, description="Plugin name, e.g. current_time.")
    arguments: dict[str, Any] = Field(default_factory=dict, description="Sent as a JSON string.")

    def arguments_json(self) -> str:
        """The arguments as the JSON string the wire carries."""
        return json.dumps(self.arguments, ensure_ascii=False, separators=(",", ":"))


class FailSpec(_Strict):
    """Make the chat fail (``conversation.chat.failed``) instead of answering."""

    code: int = 5000
    msg: str = "the emulated model failed (scripted by the scenario)"


class Turn(_Strict):
    """One scripted exchange."""

    keywords: list[str] = Field(default_factory=list, description="Text turns matching any of these.")
    transcript: str | None = Field(None, description='What the "ASR" heard when the turn is audio.')
    reply: list[str] = Field(default_factory=list, description="Sentences (templates) spoken in order.")
    tool_calls: list[ToolCallSpec] = Field(default_factory=list)
    fail: FailSpec | None = None
    faults: FaultSettings | None = Field(None, description="Fault overrides while this turn is answered.")
    think_delay_ms: float | None = Field(None, ge=0, description="Overrides the server's think delay.")

    @field_validator("reply")
    @classmethod
    def _templates(cls, reply: list[str]) -> list[str]:
        for index, sentence in enumerate(reply):
            try:
                check_template(sentence)
            except TemplateError as exc:
                raise ValueError(f"reply[{index}]: {exc}") from exc
            if not sentence.strip():
                raise ValueError(f"reply[{index}] is empty")
        return reply

    @model_validator(mode="after")
    def _says_something(self) -> Turn:
        if not self.reply and self.fail is None and (self.faults is None or self.faults.error_code is None):
            raise ValueError("a turn needs reply sentences, a fail table or a faults.error_code")
        return self


class Scenario(_Strict):
    """A scripted bot. See the module docstring for how turns are chosen."""

    name: str
    description: str = ""
    turns: list[Turn] = Field(default_factory=list)
    fallback: Turn | None = None
    loop: bool = Field(False, description="Wrap the ordered cursor around after the last turn.")
    prologue: str = Field(
        DEFAULT_PROLOGUE,
        min_length=1,
        max_length=1024,
        description="The bot's opening line: spoken after chat.updated when the client sets "
        "need_play_prologue without a prologue_content of its own.",
    )
    on_empty_audio: Literal["reply", "ignore", "error"] = Field(
        "ignore",
        description="input_audio_buffer.complete with no audio: answer anyway, do nothing after the ack, "
        "or send error 4000.",
    )


#: Used when nothing matches and the scenario has no fallback.
DEFAULT_FALLBACK = Turn(
    transcript="Hello?",
    reply=["I am the voiced emulator.", "I have no scripted answer for that."],
)


@dataclass
class TurnCursor:
    """Per-connection position in a scenario. Call :meth:`for_text` / :meth:`for_audio` per user turn."""

    scenario: Scenario
    position: int = 0

    def _take_ordered(self) -> Turn | None:
        turns = self.scenario.turns
        if self.scenario.loop and turns:
            self.position %= len(turns)
        if self.position >= len(turns):
            return None
        turn = turns[self.position]
        self.position += 1
        return turn

    def _fallback(self) -> Turn:
        return self.scenario.fallback or DEFAULT_FALLBACK

    def for_text(self, text: str) -> Turn:
        """The turn answering a typed user message."""
        lowered = text.lower()
        for turn in self.scenario.turns:
            if any(keyword.lower() in lowered for keyword in turn.keywords):
                return turn
        turns = self.scenario.turns
        index = self.position % len(turns) if self.scenario.loop and turns else self.position
        if index < len(turns) and not turns[index].keywords:
            return self._take_ordered() or self._fallback()
        return self._fallback()

    def for_audio(self) -> Turn:
        """The turn answering a spoken user turn (its transcript is what was "heard")."""
        return self._take_ordered() or self._fallback()


def bundled_scenarios() -> list[str]:
    """Names of the scenarios shipped with the package."""
    folder = resources.files("voiced.emulator") / "scenarios"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def _format_location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_scenario(text: str, source: str) -> Scenario:
    """Validate TOML text; ``source`` names the file in error messages. Raises :class:`ScenarioError`."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from exc
    raw.setdefault("name", Path(source).stem)
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{_format_location(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ScenarioError(f"{source}: {problems}") from exc


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a bundled scenario by name (``demo``, ``echo``, ``tools``, ``long``) or a TOML file by path.

    Raises :class:`ScenarioError` naming the file and key when the file is missing or invalid.
    """
    text_name = str(name_or_path)
    path = Path(name_or_path)
    if isinstance(name_or_path, Path) or text_name.endswith(".toml") or "/" in text_name:
        try:
            return parse_scenario(path.read_text(encoding="utf-8"), str(path))
        except OSError as exc:
            raise ScenarioError(f"{path}: cannot read scenario file: {exc}") from exc
    resource = resources.files("voiced.emulator") / "scenarios" / f"{text_name}.toml"
    if not resource.is_file():
        raise ScenarioError(
            f"no bundled scenario named {text_name!r}; bundled: {', '.join(bundled_scenarios())} "
            "(or pass the path of a .toml file)"
        )
    return parse_scenario(resource.read_text(encoding="utf-8"), f"<bundled>/{text_name}.toml")
