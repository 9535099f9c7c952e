"""Starting the UI beside a running client (``onehop client --ui``)."""

from __future__ import annotations

import sys
import webbrowser

from ...errors import ConfigError, ConfigProblem
from ..notices import LISTENING_WEB_UI_PORT
from ..ports import ControlledClient
from .control import ControllerControl
from .server import UIServer
from .settings import SettingsFile



async def start_ui(controller: ControlledClient, *, config_file: str | None, open_browser: bool = True,
                   say=lambda line: print(line, file=sys.stderr, flush=True)) -> UIServer:
    """Serve the UI on 127.0.0.1, say its address (with the token) once, open it."""
    config = controller.config
    control = ControllerControl(controller, SettingsFile(config_file, config.data_dir))
    server = UIServer(control, port=config.ui_port, open_url=webbrowser.open if open_browser else None)
    try:
        url = await server.start()
    except OSError as exc:
        raise ConfigError([ConfigProblem("--ui-port", f"cannot listen on 127.0.0.1:{config.ui_port}: "
                                         f"{exc.strerror or exc} (choose another with --ui-port N, or 0)")]) from None
    controller.notices.emit(LISTENING_WEB_UI_PORT, port=server.port)
    say(f"onehop UI: {url}")
    if open_browser:
        webbrowser.open(url)
    return server
