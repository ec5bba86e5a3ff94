"""Live translation of each final into one or more languages.

    captioner run --translate es,fr [--translate-backend apertium|libretranslate|argos]

Translations reach the other plugins through the `on_translation` hook (the subtitle
writer adds `meeting.es.srt`, the meeting log records them), never by plugins importing
each other. They never delay the original captions: this plugin has its own event queue,
like every plugin, and waits for the translator there. They keep the order of the
finals: finals are translated one after another, each language concurrently. A failing,
slow or garbled backend gives a non-fatal error (each request has a timeout); after
three failures in a row a language rests for 30 s, so a dead server is not asked again
and again while the backlog grows. Backends are registered through
`register_translators`, so another plugin can add one.
"""

from __future__ import annotations

import asyncio
import time

from captioner import Translation, UsageError, collect_registrations, hookimpl

from . import hookspecs

from .backends import Apertium, Argos, LibreTranslate, TranslationFailed

FAILURES_BEFORE_REST = 3
REST_SECONDS = 30.0


@hookimpl
def add_hookspecs(plugin_manager):
    plugin_manager.add_hookspecs(hookspecs)


@hookimpl
def register_translators(register):
    register("libretranslate", LibreTranslate, "the LibreTranslate HTTP API (--translate-url)")
    register("apertium", Apertium, "Apertium from Debian: offline, rule-based")
    register("argos", Argos, "Argos Translate, with an installed language package")


@hookimpl
def add_options(parser, command):
    if command == "serve":
        return
    parser.add_argument("--translate", metavar="LANG[,LANG...]", help="translate each final into these languages")
    parser.add_argument("--translate-backend", metavar="NAME",
                        help="libretranslate, apertium or argos (default: libretranslate with --translate-url, "
                        "else apertium)")
    parser.add_argument("--translate-url", metavar="URL", help="a LibreTranslate server; its key from LIBRETRANSLATE_API_KEY")
    parser.add_argument("--translate-from", default="en", metavar="LANG", help="the spoken language (default en)")
    parser.add_argument("--translate-timeout", type=float, default=5.0, metavar="S",
                        help="give up on one translation after S seconds (default 5)")


@hookimpl
def configure(config):
    wanted = config.option("translate")
    if not wanted or config.plugin_manager is None:
        return
    languages = [code.strip() for code in str(wanted).split(",") if code.strip()]
    backends = collect_registrations(config.plugin_manager, "register_translators", "translator")
    name = config.option("translate_backend") or ("libretranslate" if config.option("translate_url") else "apertium")
    if name not in backends:
        raise UsageError(f"--translate-backend {name}: unknown; installed: {', '.join(sorted(backends))}")
    backend = backends[name].factory(config)
    source = config.option("translate_from", "en")
    available = backend.languages(source)
    if available is not None:
        missing = [code for code in languages if code not in available]
        if missing:
            can = ", ".join(sorted(available)) or "none"
            raise UsageError(f"--translate {','.join(missing)}: {name} cannot translate {source} into that; it can into: {can}")
    translator = Translator(backend, languages, source, float(config.option("translate_timeout", 5.0)), config.meeting)
    config.plugin_manager.register(translator, name="translator")


class Translator:
    def __init__(self, backend, languages: list[str], source: str, timeout: float, events):
        self.backend = backend
        self.languages = languages
        self.source = source
        self.timeout = timeout
        self.events = events
        self.failures = {language: 0 for language in languages}
        self.resting_until = {language: 0.0 for language in languages}

    @hookimpl
    async def on_final(self, turn):
        if turn.text.strip():
            await asyncio.gather(*(self._translate(turn, language) for language in self.languages))

    async def _translate(self, turn, language: str) -> None:
        if time.monotonic() < self.resting_until[language]:
            return
        try:
            text = await asyncio.wait_for(self.backend.translate(turn.text, self.source, language), self.timeout)
        except (TranslationFailed, TimeoutError) as error:
            reason = str(error) or f"no answer within {self.timeout:g} s"
            self.failures[language] += 1
            message = f"translation into {language} failed: {reason}; the original captions go on"
            if self.failures[language] >= FAILURES_BEFORE_REST:
                self.resting_until[language] = time.monotonic() + REST_SECONDS
                self.failures[language] = 0
                message += f"; {language} rests for {REST_SECONDS:g} s after {FAILURES_BEFORE_REST} failures"
            self._report(message)
            return
        self.failures[language] = 0
        text = " ".join(text.split())  # backends leave double spaces and stray newlines
        self.events.emit("on_translation", translation=Translation(turn, language, text, self.backend.name))

    def _report(self, message: str) -> None:
        if self.events is not None:
            self.events.error(message, plugin="translate")

    @hookimpl
    async def on_meeting_end(self, summary):
        await self.backend.close()
