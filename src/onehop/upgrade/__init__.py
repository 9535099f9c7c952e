"""The operator half of client upgrades: the files to publish for one client build.

``artifacts`` makes, with the format of ``onehop.client.upgrade.package``, Psiphon's
upgrade package (the build, gzip, signed with the upgrade key) and, beyond Psiphon,
signed bsdiff4 deltas from earlier builds. ``onehop network client-version add`` /
``publish`` call it; nothing here touches the network database.

Boundary: imports ``onehop.core`` and the client half (``onehop.client.upgrade``), which
never imports this package. The client's side (download, verify, install, rollback)
lives in ``onehop.client.upgrade``.
"""
