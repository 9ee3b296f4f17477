"""Reading a transcript for structure: sentences, key terms, topic shifts and quotable spans.

Plain lexical statistics over the recognised words, so it runs offline on a CPU in
milliseconds and needs no model beyond the speech recogniser that already ran.
"""
