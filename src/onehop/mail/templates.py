"""The reply texts: ``templates/<lang>/`` files shipped as package data.

Each language directory holds ``meta.json`` (``name``, ``direction`` ltr/rtl,
``links_subject``, ``attachment_subject``, and ``install``: for each build format, how to
run the attached build, with ``$filename``) and four ``string.Template`` files:
``links.txt``, ``links.html``, ``attachment.txt``, ``attachment.html``. Placeholders:
``$channel_name $sponsor_name $links $filename $address $lang $direction $subject $install``
(``$links`` is one URL per line in text, ``<li>`` items in HTML; every value substituted
into HTML is escaped by the renderer). Everything is checked when loaded, so a missing
file or an unknown placeholder stops the responder at start, not at the first request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template
from types import MappingProxyType

from ..errors import ConfigError, ConfigProblem

KINDS = ("links", "attachment")
PLACEHOLDERS = frozenset({"channel_name", "sponsor_name", "links", "filename", "address", "lang",
                          "direction", "subject", "install"})
_META_KEYS = ("name", "direction", "links_subject", "attachment_subject")
#: What `network build-client` can make; the attachment reply's instructions depend on it.
BUILD_FORMATS = ("zipapp", "standalone")
DEFAULT_BUILD_FORMAT = "zipapp"


@dataclass(frozen=True)
class LanguageTemplates:
    lang: str
    name: str
    direction: str
    subjects: Mapping[str, str]       # kind -> subject
    text: Mapping[str, Template]      # kind -> plain text body
    html: Mapping[str, Template]      # kind -> HTML body
    # build format -> how to run it ($filename)
    install: Mapping[str, Template] = field(default_factory=lambda: MappingProxyType({}))

    def install_text(self, build_format: str | None, filename: str) -> str:
        template = self.install.get(build_format or DEFAULT_BUILD_FORMAT)
        return template.substitute(filename=filename) if template is not None else ""


@dataclass(frozen=True)
class TemplateSet:
    languages: Mapping[str, LanguageTemplates]

    @property
    def supported(self) -> frozenset[str]:
        return frozenset(self.languages)

    def get(self, lang: str) -> LanguageTemplates:
        return self.languages[lang]


def default_templates_dir() -> Path:
    return Path(str(resources.files("onehop.mail") / "templates"))


def load_templates(directory: str | Path | None = None) -> TemplateSet:
    """Every language under ``directory`` (default: the packaged templates)."""
    root = Path(directory) if directory else default_templates_dir()
    problems: list[ConfigProblem] = []
    languages = {}
    try:
        entries = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(root), f"cannot list templates: {exc.strerror}")]) from None
    for lang_dir in entries:
        loaded = _load_language(lang_dir, problems)
        if loaded is not None:
            languages[loaded.lang] = loaded
    if "en" not in languages and not problems:
        problems.append(ConfigProblem(str(root / "en"), "the English templates are required (the fallback)"))
    if problems:
        raise ConfigError(problems, str(root))
    return TemplateSet(MappingProxyType(languages))


def _load_language(lang_dir: Path, problems: list[ConfigProblem]) -> LanguageTemplates | None:
    before = len(problems)
    meta = _read_meta(lang_dir / "meta.json", problems)
    text: dict[str, Template] = {}
    html: dict[str, Template] = {}
    for kind in KINDS:
        for suffix, into in (("txt", text), ("html", html)):
            path = lang_dir / f"{kind}.{suffix}"
            template = _read_template(path, problems)
            if template is not None:
                into[kind] = template
    install = _install_texts(lang_dir / "meta.json", meta, problems) if meta is not None else {}
    if "install" not in (meta or {}) and any("install" in t.get_identifiers() for t in (*text.values(),
                                                                                       *html.values())):
        problems.append(ConfigProblem(f"{lang_dir / 'meta.json'}:install", "required: the templates use $install"))
    if len(problems) > before or meta is None:
        return None
    return LanguageTemplates(lang=lang_dir.name, name=meta["name"], direction=meta["direction"],
                             subjects=MappingProxyType({k: meta[f"{k}_subject"] for k in KINDS}),
                             text=MappingProxyType(text), html=MappingProxyType(html),
                             install=MappingProxyType(install))


def _install_texts(path: Path, meta: dict, problems: list[ConfigProblem]) -> dict[str, Template]:
    """``install``: one single-line text per build format, placeholders: ``$filename``."""
    raw = meta.get("install")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(ConfigProblem(f"{path}:install", f"must map each build format ({', '.join(BUILD_FORMATS)}) "
                                                         "to how to run the attached build"))
        return {}
    texts = {}
    for name in BUILD_FORMATS:
        value = raw.get(name)
        if not isinstance(value, str) or not value.strip() or "\n" in value or "\r" in value:
            problems.append(ConfigProblem(f"{path}:install.{name}", "required (one non-empty line)"))
            continue
        template = Template(value)
        if not template.is_valid() or set(template.get_identifiers()) - {"filename"}:
            problems.append(ConfigProblem(f"{path}:install.{name}", "only $filename may be used ($$ for a dollar)"))
            continue
        texts[name] = template
    for name in set(raw) - set(BUILD_FORMATS):
        problems.append(ConfigProblem(f"{path}:install.{name}",
                                      f"unknown build format (known: {', '.join(BUILD_FORMATS)})"))
    return texts


def _read_meta(path: Path, problems: list[ConfigProblem]) -> dict | None:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(ConfigProblem(str(path), f"cannot read: {exc}"))
        return None
    if not isinstance(meta, dict):
        problems.append(ConfigProblem(str(path), "must be a JSON object"))
        return None
    for key in _META_KEYS:
        if not isinstance(meta.get(key), str) or not meta[key].strip():
            problems.append(ConfigProblem(f"{path}:{key}", "required (a non-empty string)"))
    for key in set(meta) - set(_META_KEYS) - {"install"}:
        problems.append(ConfigProblem(f"{path}:{key}", "unknown key"))
    if meta.get("direction") not in ("ltr", "rtl"):
        problems.append(ConfigProblem(f"{path}:direction", "must be ltr or rtl"))
    if any("\n" in str(meta.get(k, "")) or "\r" in str(meta.get(k, "")) for k in _META_KEYS):
        problems.append(ConfigProblem(str(path), "values must be single lines"))
    return meta


def _read_template(path: Path, problems: list[ConfigProblem]) -> Template | None:
    try:
        template = Template(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(ConfigProblem(str(path), f"cannot read: {exc}"))
        return None
    if not template.is_valid():
        problems.append(ConfigProblem(str(path), "invalid placeholder (write $$ for a dollar sign)"))
        return None
    unknown = set(template.get_identifiers()) - PLACEHOLDERS
    if unknown:
        problems.append(ConfigProblem(str(path), f"unknown placeholders: {', '.join(sorted(unknown))}"))
        return None
    return template
