"""The texts sticc ships, in disjoint sets, so no plan is scored on text it was fitted to.

- `CALIBRATION_SENTENCES`: the quantizer's calibration texts (`sticc.model.activation_stats`
  gathers its input statistics on them);
- `IMPORTANCE_SENTENCES`: the importance profile's default calibration texts
  (`sticc.profile.measure_importance`); lengths vary on purpose; a decoder's profile reads them
  joined into `IMPORTANCE_PASSAGES` (`sticc.profile.decoder_importance`: its loss is taken at
  every position of a passage, so longer texts give more positions per forward);
- `EVAL_SENTENCES`: held out from both: fidelity against fp32 is measured on these (benchmarks,
  examples);
- `HELDOUT_SHORT_TEXTS` and `HELDOUT_LONG_TEXTS`: held out from both as well: runners against
  sentence-transformers (`tests/test_sentence.py`, `examples/sentence_fidelity.py`), short texts
  (degenerate ones included) and texts longer than MiniLM's `max_seq_length` of 256 tokens (266,
  382 and 1193 tokens with its tokenizer: the last is longer than its 512 positions too).

Decoders are evaluated on `examples/texts/heldout.txt`, which shares no sentence with any of these.
"""

CALIBRATION_SENTENCES = (
    "The city council approved a new budget that expands public transport and cuts parking fees downtown.",
    "After three days of hiking through the rain, we finally reached the hut at the top of the valley.",
    "Researchers found that mice given the compound lived longer and showed fewer signs of inflammation.",
    "To install the package, run the installer as an administrator and restart your computer afterwards.",
    "What is the difference between a virus and a bacterium, and why do antibiotics only work on one?",
    "The orchestra opened the season with Mahler's second symphony, conducted by a guest from Vienna.",
    "Shares of the chipmaker fell sharply after it warned that supply shortages would hurt sales.",
    "My sister adopted a grey kitten from the shelter, and it already sleeps on her keyboard.",
    "The ancient Romans built aqueducts that carried fresh water across valleys for dozens of miles.",
    "Can you recommend a good book about the history of mathematics for a high school student?",
    "Please send the signed contract back by Friday so that we can schedule the delivery.",
    "A sudden storm knocked out power to thousands of homes along the northern coast last night.",
    "The function returns null when the key is missing, so always check the result before using it.",
    "Olive oil, garlic, and a little lemon juice make a simple dressing for almost any salad.",
    "He trained for two years before running his first marathon in just under four hours.",
    "The judge ruled that the evidence had been obtained illegally and dismissed the case.",
    "Glaciers in the Alps have lost more than half of their volume since the early twentieth century.",
    "I'm not sure whether the meeting is on Tuesday or Wednesday; could you check the calendar?",
    "The startup raised forty million dollars to build batteries for electric trucks.",
    "Children learn languages faster when they hear them spoken at home from an early age.",
    "Our hotel room had a balcony overlooking the harbor, where fishing boats came in at dawn.",
    "The spacecraft will use the gravity of Venus to slingshot toward the outer solar system.",
    "Why does my laptop fan get so loud whenever I open more than a few browser tabs?",
    "Volunteers planted two thousand trees along the river to prevent erosion and flooding.",
    "The painting was stolen in 1990 and has never been recovered, despite a large reward.",
    "Regular exercise lowers blood pressure and improves sleep, according to the new study.",
    "The recipe calls for butter, but you can substitute coconut oil to make it vegan.",
    "Customers complained that the update removed features they relied on every day.",
    "The detective noticed a muddy footprint beside the window that nobody else had seen.",
    "Inflation slowed for the fourth month in a row, giving the central bank room to pause.",
    "A good password is long, unique to each site, and stored in a password manager.",
    "The tournament final went to penalties after both teams failed to score in extra time.",
)


IMPORTANCE_SENTENCES = (
    "Thanks!",
    "Where is the nearest pharmacy?",
    "Turn off the oven.",
    "Why do cats purr?",
    "The referee blew the whistle.",
    "I love this song.",
    "The bridge will be closed for repairs until the end of March.",
    "She forgot her umbrella at the café and had to walk home in the pouring rain.",
    "Quantum computers exploit superposition and entanglement to solve certain problems much faster "
    "than classical machines, although building reliable qubits remains extremely difficult.",
    "The farmers' market on Saturday morning sells fresh bread, local honey, cheese from nearby farms, "
    "and flowers cut the same day.",
    "After the merger, the two companies kept separate brands but combined their logistics networks to save costs.",
    "In 1969, two astronauts walked on the Moon while a third orbited above them in the command module.",
    "The error message says the file is locked by another process.",
    "Our neighbours are repainting their fence a bright shade of yellow.",
    "Good morning, everyone, and welcome to the annual general meeting of the rowing club.",
    "A balanced diet includes vegetables, whole grains, lean protein, and plenty of water.",
    "Could you explain how compound interest works with a simple example?",
    "Lightning struck the old oak tree, splitting its trunk down the middle.",
    "The library extended its opening hours during the exam period so students could study late into the evening.",
    "He whispered the password and the heavy door creaked open.",
    "Sea levels are rising faster than predicted, threatening low-lying islands and coastal cities around the world.",
    "The spreadsheet crashed when I tried to sort a column with more than a million rows.",
    "Bees tell each other where the flowers are through a special dance.",
    "The new law requires restaurants to display calorie counts next to every item on their menus, "
    "starting next January.",
    "My grandfather repaired watches in a tiny workshop behind the train station for almost fifty years.",
    "Which programming language should a beginner learn first?",
    "The hurricane weakened to a tropical storm before making landfall.",
    "Delivery was fast, but the box arrived damaged and one of the glasses was broken.",
    "Philosophers have long debated whether free will is compatible with a universe governed by physical laws.",
    "The violinist tuned her instrument while the audience slowly found their seats.",
    "Store the vaccine between two and eight degrees Celsius and protect it from light.",
    "Once upon a time, in a kingdom by the sea, there lived a fisherman who could talk to the fish, and "
    "every evening he asked them about the storms that were coming, the ships that had sunk, and the "
    "treasures hidden beneath the waves.",
)


# a decoder's importance profile: the same sentences, eight to a passage, in order (4 passages, about
# 120 tokens each with SmolLM2's tokenizer)
IMPORTANCE_PASSAGE_SENTENCES = 8
IMPORTANCE_PASSAGES = tuple(
    " ".join(IMPORTANCE_SENTENCES[start : start + IMPORTANCE_PASSAGE_SENTENCES])
    for start in range(0, len(IMPORTANCE_SENTENCES), IMPORTANCE_PASSAGE_SENTENCES)
)


EVAL_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Quarterly revenue rose 12 percent, beating analyst expectations despite weaker demand in Europe.",
    "How do I reset my router if the admin password no longer works?",
    "She played a haunting cello solo at the memorial service last Sunday.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The committee postponed the vote until every member had read the full report.",
    "Add two cups of flour, a pinch of salt, and stir until the dough is smooth.",
    "Is it safe to take ibuprofen together with antihistamines?",
    "The striker scored twice in the final ten minutes to win the cup.",
    "A segmentation fault usually means the program touched memory it does not own.",
    "Thousands of migrating cranes stopped over at the lake this autumn.",
    "My flight was cancelled, so I spent the night on a bench at the airport.",
    "The treaty ended decades of border disputes between the two kingdoms.",
    "Use a binary search when the array is sorted; it runs in logarithmic time.",
    "Grandma's garden is full of tomatoes, zucchini and sunflowers every August.",
    "Interest rates are expected to stay unchanged until the end of the year.",
    "He apologized for the misunderstanding and offered to pay for the damage.",
    "The telescope captured faint light from a galaxy billions of years old.",
    "Please remember to water the plants while I am away on vacation.",
    "Is there a vegetarian restaurant open late near the train station?",
    "The novel follows three generations of a fishing family on a remote island.",
    "Vaccines train the immune system to recognize specific pathogens.",
    "Our startup is hiring backend engineers familiar with distributed databases.",
    "Heavy snowfall closed the mountain pass for the third time this week.",
    "I can't believe how expensive concert tickets have become!",
    "The museum's new exhibit explores the history of early photography.",
    "Machine translation quality improved dramatically with neural networks.",
    "Turn left at the bakery, then walk two blocks to reach the library.",
    "The toddler giggled as the puppy licked her face.",
    "Climate scientists warn that coral reefs face widespread bleaching.",
)


HELDOUT_SHORT_TEXTS = (
    "The ferry was late because of fog over the harbour.",
    "She tuned the old piano before the recital.",
    "Quarterly revenue rose eight percent on strong cloud sales.",
    "How do I reset a forgotten router password?",
    "Bees communicate the location of flowers through a waggle dance.",
    "The referee disallowed the goal after a video review.",
    "Add two cups of flour and stir until smooth.",
    "A lunar eclipse happens when Earth blocks sunlight from reaching the Moon.",
    "", "ok", "Ünïcödé tëxt with àccents and emoji 🚀 mixed in.",
)
_PARAGRAPH = (
    "In the late nineteenth century, railway companies standardized time zones so that timetables "
    "across vast distances could be coordinated, replacing a patchwork of local solar times kept by "
    "each town's clock. Engineers, merchants and travellers all benefited, though some communities "
    "resisted the change for decades, insisting that noon should mean the sun stood highest overhead. "
)
HELDOUT_LONG_TEXTS = (
    _PARAGRAPH * 4,
    (_PARAGRAPH + "Meanwhile the telegraph carried signals faster than any train. ") * 5,
    " ".join(f"item{i} costs {i * 3} dollars" for i in range(200)),
)
