"""captioner-shout: every final caption, in capitals, in a file of your choice."""

from captioner import OutputPath, hookimpl


@hookimpl
def add_options(parser, command):
    if command in ("replay", "run"):
        parser.add_argument("--shout-file", type=OutputPath, metavar="PATH",
                            help="also write each caption, in capitals, to PATH")


@hookimpl
def configure(config):
    path = config.option("shout_file")
    if path and config.plugin_manager is not None:
        # Opened now, before any audio: a missing directory, an unwritable file, or the
        # recording being replayed is one clear line and exit code 2.
        config.plugin_manager.register(Shouter(config.outputs.open(path, "--shout-file")), name="shouter")


class Shouter:
    """Registered for one meeting; its hooks run on its own thread, one at a time."""

    def __init__(self, out):
        self.out = out

    @hookimpl
    def on_final(self, turn):
        self.out.write(turn.text.upper() + "\n")
        self.out.flush()  # a killed process keeps what was written

    @hookimpl
    def on_meeting_end(self, summary):
        self.out.close()
