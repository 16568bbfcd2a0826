"""The synthetic knowledge corpus's vocabulary: which attributes an entity has, each attribute's value
set and sentence templates, and the lm-eval task group and popularity buckets its questions go in.

Shared because both sides read it: the corpus spec check (``moe_schema.corpus``) refuses unknown
attributes and the suite parser knows the corpus's task names; the worker's generator
(``workers.corpora.knowledge``) and task writer (``workers.corpora.tasks``) draw from it.
"""

from __future__ import annotations

_CITIES = ("Arlen", "Brisport", "Calder", "Dunmore", "Eastwick", "Falkirk", "Glenrow", "Harwich", "Ilford",
           "Jarrow", "Kelso", "Lanark", "Marlow", "Newbury", "Oban", "Penrith", "Quarry Bay", "Redhill",
           "Selby", "Thirsk", "Ulverston", "Ventnor", "Whitby", "Yeovil", "Zennor", "Alnwick", "Buxton",
           "Cromer", "Devizes", "Ely", "Frome", "Goole", "Hexham", "Ripon", "Settle", "Tring")
_EMPLOYERS = ("Acme Works", "Borealis Labs", "Cobalt Foods", "Delta Freight", "Ember Textiles", "Fjord Bank",
              "Granite Tools", "Helix Pharma", "Iris Optics", "Juniper Press", "Kestrel Air", "Lumen Power",
              "Meridian Rail", "Nimbus Soft", "Orchid Hotels", "Pioneer Mining", "Quartz Glass", "Rivet Motors",
              "Summit Steel", "Tidal Energy", "Umber Paints", "Vertex Chips", "Willow Farms", "Zephyr Ships")
_UNIVERSITIES = ("Ashford College", "Bellmont University", "Carrow Institute", "Dalby University",
                 "Elmswood College", "Fenwick University", "Greyfield Institute", "Holloway College",
                 "Irving University", "Kingsbridge Institute", "Larkin College", "Moreton University")
_FIELDS = ("chemistry", "law", "music", "geology", "medicine", "history", "physics", "economics",
           "botany", "architecture", "linguistics", "astronomy", "nursing", "philosophy", "zoology", "design")

# attribute -> (value set, templates). Template 0 ends with the value: the lm-eval prompt is its prefix.
ATTRIBUTES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "birth_year": (tuple(str(y) for y in range(1900, 2000)),
                   ("{name} was born in {v}.", "{name} came into the world in {v}.",
                    "The birth year of {name} is {v}.", "{name}'s life began in {v}.")),
    "city": (_CITIES, ("{name} lives in {v}.", "{name} makes a home in {v}.",
                       "The city where {name} resides is {v}.", "{name} settled down in {v}.")),
    "employer": (_EMPLOYERS, ("{name} works for {v}.", "{name} is employed by {v}.",
                              "The employer of {name} is {v}.", "{name} earns a living at {v}.")),
    "university": (_UNIVERSITIES, ("{name} studied at {v}.", "{name} graduated from {v}.",
                                   "The alma mater of {name} is {v}.", "{name} holds a degree from {v}.")),
    "field": (_FIELDS, ("{name} specialises in {v}.", "{name} built a career in {v}.",
                        "The field of {name} is {v}.", "{name} devoted years to {v}.")),
}

BUCKETS = ("head", "torso", "tail")  # popularity buckets, most mentioned first
GROUP = "longtail"  # the lm-eval group holding one task per bucket
HELDOUT = ("seen", "unseen")  # held-out biographies: of trained entities, of entities never seen
# Every task or group name a suite may ask for with `tasks: [{corpus: <name>}]`.
TASK_NAMES = ([GROUP] + [f"{GROUP}_{b}" for b in BUCKETS] + [f"{GROUP}_values"]
              + [f"{GROUP}_values_{b}" for b in BUCKETS] + [f"{GROUP}_heldout"]
              + [f"{GROUP}_heldout_{k}" for k in HELDOUT])
FORMAT = 2  # the token layout of a corpus (BOS doc EOS); part of corpus cache keys and train keys
