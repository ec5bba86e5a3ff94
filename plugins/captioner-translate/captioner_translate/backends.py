"""Translation backends, each registered through the `register_translators` hook.

A backend is made by `factory(config)` and has `name`, `languages(source)` (the target
codes it can do from `source`, or None when it cannot tell) and an async
`translate(text, source, target)` that returns the text or raises `TranslationFailed`.

- libretranslate: the LibreTranslate HTTP API (self-hosted; `--translate-url`), neural.
- apertium: Debian's rule-based Apertium (`apt install apertium apertium-eng-spa`): fully
  offline and deterministic, literal quality; one short process per final (~0.15 s).
- argos: Argos Translate, when it is installed with a language package for the pair.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from captioner import UsageError

APERTIUM_MODES = Path("/usr/share/apertium/modes")
# Apertium names languages with three letters; captioner takes ISO 639-1 codes.
THREE_TO_TWO = {
    "eng": "en", "spa": "es", "cat": "ca", "fra": "fr", "por": "pt", "glg": "gl", "ita": "it",
    "epo": "eo", "deu": "de", "nld": "nl", "oci": "oc", "eus": "eu", "ron": "ro", "swe": "sv",
    "dan": "da", "nob": "nb", "nno": "nn", "isl": "is", "afr": "af", "arg": "an", "ast": "ast",
}


class TranslationFailed(Exception):
    """One translation did not happen; the message is one line, without secrets."""


class LibreTranslate:
    name = "libretranslate"

    def __init__(self, config):
        import httpx

        url = config.option("translate_url")
        if not url:
            raise UsageError("--translate-backend libretranslate needs --translate-url (e.g. http://127.0.0.1:5000)")
        self.url = url.rstrip("/")
        self.api_key = os.environ.get("LIBRETRANSLATE_API_KEY") or None
        # Connection attempts are retried once: a server's idle keep-alive connection may
        # have been closed during a silence, which must not drop a translation.
        self.client = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(retries=1), timeout=None)
        self._httpx = httpx

    def languages(self, source: str) -> set[str] | None:
        import httpx

        try:
            response = httpx.get(f"{self.url}/languages", timeout=5)
            response.raise_for_status()
            entries = response.json()
            for entry in entries:
                if entry.get("code") == source:
                    return set(entry.get("targets") or [])
            return set()
        except (httpx.HTTPError, ValueError, AttributeError, TypeError):
            return None  # the server may come up later: try translating anyway

    async def translate(self, text: str, source: str, target: str) -> str:
        body = {"q": text, "source": source, "target": target, "format": "text"}
        if self.api_key:
            body["api_key"] = self.api_key
        try:
            response = await self.client.post(f"{self.url}/translate", json=body)
        except self._httpx.HTTPError as error:
            raise TranslationFailed(f"LibreTranslate at {self.url} unreachable ({type(error).__name__})") from None
        if response.status_code != 200:
            raise TranslationFailed(f"LibreTranslate answered HTTP {response.status_code}{_error_of(response)}")
        try:
            translated = response.json()["translatedText"]
        except (ValueError, KeyError, TypeError):
            raise TranslationFailed("LibreTranslate answered something that is not its JSON") from None
        if not isinstance(translated, str):
            raise TranslationFailed("LibreTranslate's translatedText is not text")
        return translated

    async def close(self) -> None:
        await self.client.aclose()


def _error_of(response) -> str:
    try:
        message = response.json().get("error")
    except (ValueError, AttributeError):
        return ""
    return f": {str(message)[:80]}" if message else ""


class Apertium:
    name = "apertium"

    def __init__(self, config):
        if shutil.which("apertium") is None:
            raise UsageError("the apertium backend needs Debian's apertium: apt install apertium apertium-eng-spa")
        self.pairs = apertium_pairs()

    def languages(self, source: str) -> set[str]:
        return {target for (from_, target) in self.pairs if from_ == source}

    async def translate(self, text: str, source: str, target: str) -> str:
        pair = self.pairs.get((source, target))
        if pair is None:
            raise TranslationFailed(f"Apertium has no {source}-{target} pair installed")
        process = await asyncio.create_subprocess_exec(
            "apertium", "-u", pair, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await process.communicate(text.encode())
        except asyncio.CancelledError:
            process.kill()
            raise
        if process.returncode != 0:
            raise TranslationFailed(f"apertium {pair} failed: {err.decode(errors='replace').strip()[:80]}")
        return out.decode().strip()

    async def close(self) -> None:
        pass


def apertium_pairs(modes: Path = APERTIUM_MODES) -> dict[tuple[str, str], str]:
    """(source, target) in ISO 639-1 -> Apertium mode name, for the installed modes."""
    pairs = {}
    for mode in sorted(modes.glob("*.mode")) if modes.is_dir() else []:
        parts = mode.stem.split("-")
        if len(parts) != 2:
            continue  # variants such as spa-eng_US
        source, target = (THREE_TO_TWO.get(part, part) for part in parts)
        pairs.setdefault((source, target), mode.stem)
    return pairs


class Argos:
    name = "argos"

    def __init__(self, config):
        try:
            import argostranslate.translate  # noqa: F401
        except ImportError:
            raise UsageError("the argos backend needs argostranslate and a language package "
                             "(pip install argostranslate; argospm install translate-en_es)") from None

    def languages(self, source: str) -> set[str]:
        import argostranslate.translate

        for language in argostranslate.translate.get_installed_languages():
            if language.code == source:
                return {t.to_lang.code for t in language.translations_from}
        return set()

    async def translate(self, text: str, source: str, target: str) -> str:
        import argostranslate.translate

        try:
            return await asyncio.to_thread(argostranslate.translate.translate, text, source, target)
        except Exception as error:  # a library without a contract for its errors
            raise TranslationFailed(f"argos failed: {type(error).__name__}: {error}") from None

    async def close(self) -> None:
        pass
