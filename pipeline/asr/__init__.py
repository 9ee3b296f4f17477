"""Speech recognition: engines, model resolution (offline), audio decoding, quality guards."""
