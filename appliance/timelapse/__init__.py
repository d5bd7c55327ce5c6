"""Timelapse recordings of prints: frames on disk, an index in store/, videos made by ffmpeg."""
