// Parse WebVTT files with `webvtt-parser` (the W3C validator's parser) in strict mode and
// print {"errors": [...], "cues": [...]} as JSON for the Python tests.
"use strict";
const fs = require("fs");
const { WebVTTParser } = require("webvtt-parser");

const text = fs.readFileSync(process.argv[2], "utf8");
const tree = new WebVTTParser().parse(text, "subtitles/captions/descriptions");
const cues = tree.cues.map((c) => ({
  id: c.id, start: c.startTime, end: c.endTime, text: c.text,
}));
process.stdout.write(JSON.stringify({ errors: tree.errors, cues }));
