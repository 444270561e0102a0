"""Drugs, access sites and documented reasons the simulated charts draw from.

RxNorm codes are ingredient-level RXCUIs (the fluids use a clinical-drug RXCUI). They are stable
per drug, which is all the engine needs for its same-drug rules; they are not a terminology source.
"""
from typing import NamedTuple

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


class Drug(NamedTuple):
    name: str
    code: str
    category: str  # chemotherapy | therapeutic | hydration


DRUGS = {
    # therapeutic / prophylactic
    "ondansetron": Drug("ondansetron", "26225", "therapeutic"),
    "ketorolac": Drug("ketorolac", "35827", "therapeutic"),
    "morphine": Drug("morphine", "7052", "therapeutic"),
    "famotidine": Drug("famotidine", "4278", "therapeutic"),
    "diphenhydramine": Drug("diphenhydramine", "3498", "therapeutic"),
    "dexamethasone": Drug("dexamethasone", "3264", "therapeutic"),
    "pantoprazole": Drug("pantoprazole", "40790", "therapeutic"),
    "methylprednisolone": Drug("methylprednisolone", "6902", "therapeutic"),
    "vancomycin": Drug("vancomycin", "11124", "therapeutic"),
    "ceftriaxone": Drug("ceftriaxone", "2193", "therapeutic"),
    "piptazo": Drug("piperacillin-tazobactam", "74169", "therapeutic"),
    "iron_sucrose": Drug("iron sucrose", "24909", "therapeutic"),
    "leucovorin": Drug("leucovorin", "6313", "therapeutic"),
    "pegfilgrastim": Drug("pegfilgrastim", "338036", "therapeutic"),
    "enoxaparin": Drug("enoxaparin", "67108", "therapeutic"),
    "cyanocobalamin": Drug("cyanocobalamin", "11248", "therapeutic"),
    # immune globulin is billed with the therapeutic codes (96365 IV, 96369 SC), not the chemo ones
    "ivig": Drug("immune globulin (IVIG)", "5657", "therapeutic"),
    "scig": Drug("immune globulin subcutaneous", "1373459", "therapeutic"),
    # chemotherapy and other highly complex drugs/biologics
    "cisplatin": Drug("cisplatin", "2555", "chemotherapy"),
    "oxaliplatin": Drug("oxaliplatin", "32592", "chemotherapy"),
    "paclitaxel": Drug("paclitaxel", "56946", "chemotherapy"),
    "carboplatin": Drug("carboplatin", "40048", "chemotherapy"),
    "rituximab": Drug("rituximab", "121191", "chemotherapy"),
    "fluorouracil": Drug("fluorouracil", "4492", "chemotherapy"),
    "bortezomib": Drug("bortezomib", "358258", "chemotherapy"),
    # prepackaged fluids
    "saline": Drug("sodium chloride 0.9%", "313002", "hydration"),
    "lr": Drug("lactated Ringer's", "1246627", "hydration"),
}

FLUIDS = ("saline", "saline", "lr")  # normal saline is the usual bag
PIV_SITES = ("PIV-L-forearm", "PIV-R-forearm", "PIV-L-hand", "PIV-R-hand", "PIV-L-AC", "PIV-R-AC")

# (drug on the first line, drug needing its own line, documented reason)
SECOND_LINE = (
    ("vancomycin", "piptazo", "incompatible with vancomycin"),
    ("piptazo", "vancomycin", "Y-site incompatible with piperacillin-tazobactam"),
    ("ivig", "vancomycin", "IVIG requires a dedicated line"),
)
