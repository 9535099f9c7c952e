"""``onehop network publish``: server lists, client builds and upgrade packages to a
directory or S3, with a manifest.

Layout under the target (names after Psiphon's operator files; the site IDs are
random so one published URL does not lead to the others):

* ``<channel site>/server_list_compressed``  remote server list (signed, zlib)
* ``<channel site>/embedded_server_list``    the embedded list, one entry per line
* ``<campaign site>/onehop-client.pyz``      the campaign's client build (``build-format``
  zipapp; a standalone build is ``onehop-client``, ``onehop-client.exe`` on Windows)
* ``<campaign site>/onehop-client.pyz.upgrade``  its upgrade package (signed, gzip)
* ``<platform site>/<name>.upgrade`` (and ``<name>.<from>-<to>.delta.upgrade``): the
  packages of each platform's newest ``client-version add --file`` build (``upgrades``);
  on S3 the full package carries ``x-amz-meta-psiphon-client-version``

Every campaign build is verified before its upgrade package is signed: the bytes must
be intact (a cached build must match the SHA-256 recorded when it was made; a
standalone's archive entries must all inflate) and must embed exactly the campaign's
config and list (``builds.verify_build``). A tampered build is refused, nothing uploaded.

Order: the target is checked first (an unreachable endpoint fails before anything is
built or written), then builds and upgrade packages, then lists, so a list never
names something not yet downloadable. Each object is replaced atomically and skipped
when unchanged (a directory target stages everything and renames it all into place at
the end, so a failure leaves the old files). The database records what went where
only once all succeeded.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import delete
from sqlalchemy.orm import Session

from ..client.upgrade.package import make_upgrade_package
from ..core.authpackage import load_private_key
from . import audit
from .builds import UPGRADE_SUFFIX, Builder, BuildSpec, embedded_files, verify_build
from .standalone import executable_name
from .entries import EntryBook
from .lists import EMBEDDED_LIST_NAME, REMOTE_LIST_NAME, embedded_list, list_text, remote_list_package
from .models import Publication
from .signing import PackageSigner
from .state import CampaignRecord, NetworkState
from .targets import Target, join_url
from .upgrades import PublishedPackage

BUILD_NAME = "onehop-client.pyz"
STANDALONE_NAME = "onehop-client"
CONTENT_TYPES = {"remote-server-list": "application/octet-stream", "embedded-server-list": "text/plain",
                 "client-build": "application/zip", "upgrade-package": "application/octet-stream",
                 "client-upgrade": "application/octet-stream"}
#: S3 metadata naming the version of a full upgrade package, for clients whose config has
#: UpgradeDownloadClientVersionHeader x-amz-meta-psiphon-client-version (Psiphon's HEAD check).
VERSION_METADATA = "psiphon-client-version"


@dataclass(frozen=True)
class ManifestItem:
    kind: str
    channel: str | None
    campaign: str | None
    sponsor: str | None
    path: str
    url: str
    sha256: str
    size: int
    changed: bool

    def as_dict(self) -> dict:
        return asdict(self)


def remote_list_path(site_id: str) -> str:
    return f"{site_id}/{REMOTE_LIST_NAME}"


def build_name(build_format: str = "zipapp") -> str:
    return executable_name(STANDALONE_NAME) if build_format == "standalone" else BUILD_NAME


def build_path(site_id: str, build_format: str = "zipapp") -> str:
    return f"{site_id}/{build_name(build_format)}"


def build_format(state: NetworkState, override: str | None = None) -> str:
    """``--format`` when given, else the ``build-format`` setting."""
    return override or state.settings.get("build-format", "zipapp")


def build_platform(state: NetworkState) -> str:
    """The psinet platform class of the network's own builds (their upgrades are signed for it)."""
    return state.settings.get("build-platform", "Other")


def client_version(state: NetworkState) -> str:
    versions = state.client_versions.get(build_platform(state), ())
    return str(max(versions)) if versions else "1"


def feedback_urls(state: NetworkState) -> tuple[str, ...]:
    url = state.settings.get("feedback-upload-url", "")
    return (url,) if url else ()


def web_urls(urls: tuple[str, ...]) -> tuple[str, ...]:
    """Only http(s) URLs go into builds: clients cannot fetch anything else."""
    return tuple(u for u in urls if u.startswith(("http://", "https://")))


def build_spec(state: NetworkState, book: EntryBook, channel_id: str, sponsor_id: str,
               remote_urls: tuple[str, ...], upgrade_urls: tuple[str, ...]) -> BuildSpec:
    return BuildSpec(channel_id=channel_id, sponsor_id=sponsor_id, client_version=client_version(state),
                     server_list=tuple(embedded_list(state, book, channel_id)),
                     remote_list_urls=web_urls(remote_urls), upgrade_urls=web_urls(upgrade_urls),
                     feedback_urls=web_urls(feedback_urls(state)))


class Publisher:
    """One publish run against one target."""

    def __init__(self, state: NetworkState, target: Target, builder: Builder | None,
                 upgrades: list[PublishedPackage] | None = None, format_override: str | None = None) -> None:
        self.state = state
        self.format = build_format(state, format_override)
        self.target = target
        self.builder = builder
        self.upgrades = upgrades or []
        self.book = EntryBook.build(state.servers, state.keys)
        self.list_signer = PackageSigner(state.keys.remote_server_list)
        self.upgrade_key = load_private_key(state.keys.upgrade.private_key) if builder is not None else None
        self.items: list[ManifestItem] = []
        self.warnings: list[str] = []
        if builder is not None and not web_urls((target.base_url,)):
            self.warnings.append(f"builds carry no remote list or upgrade URLs: {target.base_url} is not an "
                                 "http(s) URL (give --base-url with the public address of the target)")

    def _put(self, kind: str, channel: str | None, campaign: CampaignRecord | None, path: str, data: bytes,
             metadata: dict[str, str] | None = None) -> None:
        changed = self.target.put(path, data, CONTENT_TYPES[kind], metadata)
        self.items.append(ManifestItem(kind, channel, campaign.id if campaign else None,
                                       campaign.sponsor_id if campaign else None, path,
                                       join_url(self.target.base_url, path),
                                       hashlib.sha256(data).hexdigest(), len(data), changed))

    def _campaign_build(self, campaign: CampaignRecord, workdir: Path) -> None:
        assert self.builder is not None
        channel = self.state.channel(campaign.channel_id)
        path = build_path(campaign.site_id, self.format)
        spec = build_spec(self.state, self.book, channel.id, campaign.sponsor_id,
                          (join_url(self.target.base_url, remote_list_path(channel.site_id)),),
                          (join_url(self.target.base_url, path + UPGRADE_SUFFIX),))
        result = self.builder.build(spec, self.state.keys, workdir / campaign.id, self.format)
        data = result.path.read_bytes()
        verify_build(data, self.format, embedded_files(spec, self.state.keys))
        self._put("client-build", channel.id, campaign, path, data)
        assert self.upgrade_key is not None  # loaded whenever there is a builder
        self._put("upgrade-package", channel.id, campaign, path + UPGRADE_SUFFIX,
                  make_upgrade_package(data, self.upgrade_key, self.state.keys.upgrade.public_key,
                                       version=spec.client_version, platform=build_platform(self.state)),
                  {VERSION_METADATA: spec.client_version})

    def _client_upgrades(self) -> None:
        for package in self.upgrades:
            metadata = {VERSION_METADATA: str(package.version)} if package.kind == "full" else None
            self._put("client-upgrade", None, None, package.path, package.data, metadata)

    def _channel_lists(self) -> None:
        for channel in self.state.channels:
            encoded = embedded_list(self.state, self.book, channel.id)
            self._put("embedded-server-list", channel.id, None, f"{channel.site_id}/{EMBEDDED_LIST_NAME}",
                      (list_text(encoded) + "\n").encode("ascii"))
            self._put("remote-server-list", channel.id, None, remote_list_path(channel.site_id),
                      remote_list_package(encoded, self.list_signer))

    def run(self) -> list[ManifestItem]:
        self.target.check()
        try:
            if self.builder is not None:
                with tempfile.TemporaryDirectory(prefix="onehop-publish-") as workdir:
                    for campaign in self.state.campaigns:
                        self._campaign_build(campaign, Path(workdir))
                self._client_upgrades()
            self._channel_lists()
        except BaseException:
            self.target.abort()
            raise
        self.target.finish()
        return self.items


def record(session: Session, ctx: audit.Context, target: Target, items: list[ManifestItem]) -> None:
    """Remember what is published where (for links in exports and build-client)."""
    for item in items:
        session.execute(delete(Publication).where(Publication.target == target.name, Publication.path == item.path))
        session.add(Publication(target=target.name, kind=item.kind, channel_id=item.channel,
                                campaign_id=item.campaign, path=item.path, url=item.url, sha256=item.sha256,
                                size=item.size, published_at=ctx.now))
    changed = [item.path for item in items if item.changed]
    audit.record(session, ctx, "publish", "publication", sorted({i.channel for i in items if i.channel}),
                 target=target.name, objects=len(items), changed=len(changed))
