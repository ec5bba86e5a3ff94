"""Where audio comes from: a file replayed as if live, the microphone (the source side of
source -> session -> events -> dispatch -> plugins). Every source yields the same
16-bit mono PCM chunks at the session rate (`pcm`)."""
