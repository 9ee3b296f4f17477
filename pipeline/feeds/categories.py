"""Apple Podcasts' category list, as Apple publishes it today (the 2019 revision).

Kept free of imports so `pipeline.config` can check `[[shows]] category` against it at start-up
without pulling in the feed builder. feedgen 1.0 ships the older list (it still has
"Literature" and lacks "True Crime"), which is why Learncast writes `itunes:category` itself.
"""

from __future__ import annotations

APPLE_CATEGORIES: dict[str, tuple[str, ...]] = {
    "Arts": ("Books", "Design", "Fashion & Beauty", "Food", "Performing Arts", "Visual Arts"),
    "Business": ("Careers", "Entrepreneurship", "Investing", "Management", "Marketing",
                 "Non-Profit"),
    "Comedy": ("Comedy Interviews", "Improv", "Stand-Up"),
    "Education": ("Courses", "How To", "Language Learning", "Self-Improvement"),
    "Fiction": ("Comedy Fiction", "Drama", "Science Fiction"),
    "Government": (),
    "History": (),
    "Health & Fitness": ("Alternative Health", "Fitness", "Medicine", "Mental Health",
                         "Nutrition", "Sexuality"),
    "Kids & Family": ("Education for Kids", "Parenting", "Pets & Animals", "Stories for Kids"),
    "Leisure": ("Animation & Manga", "Automotive", "Aviation", "Crafts", "Games", "Hobbies",
                "Home & Garden", "Video Games"),
    "Music": ("Music Commentary", "Music History", "Music Interviews"),
    "News": ("Business News", "Daily News", "Entertainment News", "News Commentary", "Politics",
             "Sports News", "Tech News"),
    "Religion & Spirituality": ("Buddhism", "Christianity", "Hinduism", "Islam", "Judaism",
                                "Religion", "Spirituality"),
    "Science": ("Astronomy", "Chemistry", "Earth Sciences", "Life Sciences", "Mathematics",
                "Natural Sciences", "Nature", "Physics", "Social Sciences"),
    "Society & Culture": ("Documentary", "Personal Journals", "Philosophy", "Places & Travel",
                          "Relationships"),
    "Sports": ("Baseball", "Basketball", "Cricket", "Fantasy Sports", "Football", "Golf",
               "Hockey", "Rugby", "Running", "Soccer", "Swimming", "Tennis", "Volleyball",
               "Wilderness", "Wrestling"),
    "Technology": (),
    "True Crime": (),
    "TV & Film": ("After Shows", "Film History", "Film Interviews", "Film Reviews",
                  "TV Reviews"),
}


def category_problem(category: str, subcategory: str) -> str | None:
    """Why (category, subcategory) is not on Apple's list, or None when it is."""
    if category not in APPLE_CATEGORIES:
        return (f"category {category!r} is not one of Apple's categories; use one of: "
                + ", ".join(APPLE_CATEGORIES))
    subs = APPLE_CATEGORIES[category]
    if subcategory and subcategory not in subs:
        allowed = ", ".join(subs) if subs else "none (leave subcategory empty)"
        return (f"subcategory {subcategory!r} is not an Apple subcategory of {category!r}; "
                f"allowed: {allowed}")
    return None
