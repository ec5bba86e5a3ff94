"""The streaming client: one WebSocket session at a time (`session`), the audio kept until
its finals come and resent after a drop (`pump`, `reconnect`), service turns made into
partials and finals on the meeting clock (`turns`), and the engine that runs a meeting
through them and hands the events to the plugins (`engine`)."""
