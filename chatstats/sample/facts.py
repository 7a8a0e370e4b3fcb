"""Planted facts: natural sentences holding a date, place, plan, name or number, each with
a question that asks for it in other words, for retrieval tests and benchmarks.

Questions avoid the answer's distinctive wording where people would too ("when does the
plane get in" for "we touch down at 6"), so word search alone cannot find them all and
search by meaning has to earn its keep. The sentences draw from a separate random stream,
so planting does not disturb the rest of the generator's choices.
"""

from __future__ import annotations

import random

from msgspec import Struct

CITIES = [
    "Lisbon",
    "Porto",
    "Denver",
    "Osaka",
    "Montreal",
    "Seville",
    "Tallinn",
    "Austin",
    "Bergen",
    "Cusco",
    "Hanoi",
    "Dublin",
    "Valencia",
    "Nairobi",
    "Quebec",
    "Krakow",
]
NAMES = [
    "Priya",
    "Tomasz",
    "Aiko",
    "Mateo",
    "Ingrid",
    "Kwame",
    "Delphine",
    "Ravi",
    "Saoirse",
    "Bruno",
    "Leilani",
    "Odette",
    "Yusuf",
    "Marisol",
    "Henrik",
    "Zara",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
PETS = ["a beagle", "a grey kitten", "a parrot", "two goldfish", "a rescue greyhound"]
FOODS = ["Ethiopian", "Georgian", "Peruvian", "Sri Lankan", "Basque", "Lebanese"]
CARS = ["a green Subaru", "a used Prius", "a red Mini", "an old Volvo wagon"]

# (answer sentence, question): both formatted with the same slots.
TEMPLATES: list[tuple[str, str]] = [
    ("we touch down in {city} at {hour} on {day}", "when does the plane get into {city}?"),
    (
        "{name}'s wedding is on {month} {date}, in a barn outside {city}",
        "what date is {name} getting married?",
    ),
    (
        "the new apartment is {n} square meters, with a balcony facing the river",
        "how big is the flat we are moving into?",
    ),
    ("my sister just adopted {pet}, she named it {name}", "what animal did my sister get?"),
    (
        "the plumber quoted {n}0 dollars to fix the leak under the sink",
        "how much will the repair of the pipes cost?",
    ),
    (
        "I finally booked the {food} place for {day} at {hour}, table for {k}",
        "which restaurant reservation did we make for dinner?",
    ),
    (
        "{name} starts the job at the hospital in {city} in {month}",
        "where is {name} going to work?",
    ),
    (
        "we bought {car} from a guy in {city}, {n}00 bucks total",
        "what vehicle did we purchase and how much was it?",
    ),
    (
        "the kids' recital got moved to the {day} after next, {hour} in the school gym",
        "when is the children's performance now?",
    ),
    (
        "I ran the half marathon in 1 hour {k}4 minutes, personal best",
        "what was my finishing time in the race?",
    ),
    (
        "my passport expires in {month}, I need to renew it before the {city} trip",
        "when does my travel document run out?",
    ),
    (
        "{name} lent me {n} euros for the concert tickets, remind me to pay her back",
        "how much money do I owe {name}?",
    ),
    (
        "the landlord says the heating will be off from {day} until the {date}th",
        "when will we have no warm radiators?",
    ),
    (
        "dentist appointment is {day} at {hour}, the clinic on {name} street",
        "when do I see the tooth doctor?",
    ),
    (
        "we are driving up to the cabin near {city} for {k} nights in {month}",
        "how long is our stay at the cottage?",
    ),
]


class TruthFact(Struct):
    """One planted fact: the message that answers `question` (`guids`: every message that
    holds part of the answer, `guid` first; empty in truth files written before it)."""

    guid: str
    question: str
    answer: str
    guids: list[str] = []


class FactPlanter:
    """Decides which ordinary messages become facts, and writes their sentences."""

    def __init__(self, seed: int, every: int = 120, limit: int = 2000) -> None:
        self.rng = random.Random(seed * 7919 + 17)
        self.every = every
        self.limit = limit
        self.planted = 0

    def maybe(self) -> tuple[str, str] | None:
        if self.planted >= self.limit or self.rng.random() >= 1.0 / self.every:
            return None
        self.planted += 1
        answer, question = self.rng.choice(TEMPLATES)
        hour = f"{self.rng.randint(5, 11)}{self.rng.choice([':15', ':30', '', ':45'])}"
        slots = {
            "city": self.rng.choice(CITIES),
            "name": self.rng.choice(NAMES),
            "day": self.rng.choice(DAYS),
            "month": self.rng.choice(MONTHS),
            "date": self.rng.randint(2, 28),
            "hour": hour,
            "n": self.rng.randint(12, 95),
            "k": self.rng.randint(2, 6),
            "pet": self.rng.choice(PETS),
            "food": self.rng.choice(FOODS),
            "car": self.rng.choice(CARS),
        }
        return answer.format(**slots), question.format(**slots)
