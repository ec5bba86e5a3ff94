"""The server side: the AssemblyAI-compatible streaming server (`streaming`) and the
embedded recognizer behind it (`embedded`: voice detection, turn endpointing, a shared
decoding pool), which `captioner serve` runs and which captions offline. Client code
never imports from here, except to start the embedded server in-process."""
