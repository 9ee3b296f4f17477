"""The caption review page and the publish gate's bookkeeping (issue 7).

`cues` parses and renders edited captions, `service` holds every review action (no web code),
`app` is the Flask app `learncast review` serves, `plots` draws the page's SVG plots.
"""
