"""Just enough HLS and DASH parsing to check what the worker uploaded.

Independent of the worker's own parsers on purpose.
"""

import math
import posixpath
import re
import xml.etree.ElementTree as ET


def _attributes(text: str) -> dict:
    """KEY=VALUE,KEY="VALUE" attribute lists of #EXT-X tags."""
    return {k: v.strip('"') for k, v in re.findall(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)', text)}


def hls_media_segments(playlist_text: str) -> list:
    """URIs of a media playlist's segments (plus the EXT-X-MAP init, if any)."""
    uris = []
    lines = [line.strip() for line in playlist_text.splitlines()]
    for index, line in enumerate(lines):
        if line.startswith("#EXT-X-MAP:"):
            uri = _attributes(line.split(":", 1)[1]).get("URI")
            if uri:
                uris.append(uri)
        if line.startswith("#EXTINF"):
            following = [x for x in lines[index + 1:] if x and not x.startswith("#")]
            if following:
                uris.append(following[0])
    return uris


def hls_variants(master_text: str) -> list:
    """[(attributes, uri)] of every #EXT-X-STREAM-INF in a master playlist."""
    variants = []
    lines = [line.strip() for line in master_text.splitlines()]
    for index, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            uri = next((x for x in lines[index + 1:] if x and not x.startswith("#")), None)
            variants.append((_attributes(line.split(":", 1)[1]), uri))
    return variants


def hls_media_renditions(master_text: str) -> list:
    """[attributes] of every #EXT-X-MEDIA (separate audio renditions)."""
    return [_attributes(line.split(":", 1)[1]) for line in master_text.splitlines()
            if line.startswith("#EXT-X-MEDIA:")]


def resolve(base_file: str, uri: str) -> str:
    """A playlist-relative URI as a path relative to the output prefix."""
    return posixpath.normpath(posixpath.join(posixpath.dirname(base_file), uri))


# ---- DASH ----------------------------------------------------------------------

_NS = {"mpd": "urn:mpeg:dash:schema:mpd:2011"}


def _iso_duration(text: str) -> float:
    match = re.fullmatch(r"P(?:\d+D)?T?(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?",
                         text or "")
    if not match:
        return 0.0
    hours, minutes, seconds = (float(x) if x else 0.0 for x in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _substitute(template: str, rep_id: str, bandwidth: str, number=None, time=None) -> str:
    def replace(match):
        name, fmt = match.group(1), match.group(2)
        value = {"RepresentationID": rep_id, "Bandwidth": bandwidth,
                 "Number": number, "Time": time}.get(name)
        if name == "" or value is None:
            return "$" if name == "" else match.group(0)
        return (fmt % int(value)) if fmt else str(value)

    return re.sub(r"\$(RepresentationID|Bandwidth|Number|Time|)(%0\d+d)?\$", replace, template)


def dash_representations(mpd_text: str) -> list:
    """Every Representation: dict(id, mime, height, bandwidth, files=[init, media...]).

    Handles SegmentTemplate (with or without SegmentTimeline) at the
    AdaptationSet or Representation level, SegmentList and BaseURL.
    """
    root = ET.fromstring(mpd_text)
    total = _iso_duration(root.get("mediaPresentationDuration", ""))
    reps = []
    for adaptation in root.iter("{%s}AdaptationSet" % _NS["mpd"]):
        set_template = adaptation.find("mpd:SegmentTemplate", _NS)
        for rep in adaptation.findall("mpd:Representation", _NS):
            rep_id = rep.get("id", "")
            bandwidth = rep.get("bandwidth", "")
            mime = rep.get("mimeType") or adaptation.get("mimeType") or ""
            content = adaptation.get("contentType", "")
            height = rep.get("height") or adaptation.get("height")
            files = []
            template = rep.find("mpd:SegmentTemplate", _NS)
            if template is None:
                template = set_template
            segment_list = rep.find("mpd:SegmentList", _NS)
            base_url = rep.find("mpd:BaseURL", _NS)
            if template is not None:
                if template.get("initialization"):
                    files.append(_substitute(template.get("initialization"), rep_id, bandwidth))
                media = template.get("media", "")
                start = int(template.get("startNumber", "1"))
                timeline = template.find("mpd:SegmentTimeline", _NS)
                if timeline is not None:
                    number, t = start, 0
                    for s in timeline.findall("mpd:S", _NS):
                        t = int(s.get("t", t))
                        d = int(s.get("d"))
                        for _ in range(int(s.get("r", "0")) + 1):
                            files.append(_substitute(media, rep_id, bandwidth, number, t))
                            number += 1
                            t += d
                elif template.get("duration"):
                    seg = int(template.get("duration")) / int(template.get("timescale", "1"))
                    count = max(1, math.ceil(total / seg - 1e-6)) if seg > 0 else 1
                    files += [_substitute(media, rep_id, bandwidth, start + i) for i in range(count)]
            elif segment_list is not None:
                init = segment_list.find("mpd:Initialization", _NS)
                if init is not None and init.get("sourceURL"):
                    files.append(init.get("sourceURL"))
                files += [s.get("media") for s in segment_list.findall("mpd:SegmentURL", _NS)]
            elif base_url is not None and base_url.text:
                files.append(base_url.text.strip())
            reps.append(dict(id=rep_id, mime=mime, content=content,
                             height=int(height) if height else None,
                             bandwidth=bandwidth, files=files))
    return reps
