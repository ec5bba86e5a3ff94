"""The plugin machinery: finding and registering plugins (`manager`), calling hooks through
pluggy (`hooks`), and delivering events to each plugin in isolation (`dispatch`)."""
