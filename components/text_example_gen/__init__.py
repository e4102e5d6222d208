"""TextExampleGen: labelled text in CSV, TSV or JSON Lines -> tf.Examples.

``component`` holds the TFX component, ``parsing`` the TFX-free reader.
"""
