"""``onehop network deploy``: servers pushed to their host over SSH and checked from here.

``layout`` says where things go on a host and holds the shell scripts run there (pure);
``wheel`` builds the onehop wheel to install; ``bundles`` collects each server's files
(from the database, or an earlier ``export``); ``services`` runs servers under systemd
or, without it, nohup with a pidfile; ``check`` dials every deployed server like a
client; ``run`` puts it together over one connection (``onehop.network.remote``, pinned
host key).
"""
