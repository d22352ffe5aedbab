//! The records every reader produces: [`Interaction`] (one user–item event) and [`Movie`]
//! (one catalogue row), with the genre helpers the formats share. Every reader depends on
//! this module; it depends on none of them.

/// The 19 genre flags of `u.item`, in file order (as listed in `u.genre`).
pub const GENRES: [&str; 19] = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
];

/// One rating event; every rating is an implicit positive unless a command says otherwise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interaction {
    pub user: u32,
    pub item: u32,
    pub rating: f32,
    pub timestamp: i64,
}

/// One row of the movie catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct Movie {
    pub id: u32,
    pub title: String,
    pub release_date: String,
    pub genres: Vec<String>,
}

/// What a MovieLens folder says about a user (`u.user`, `users.dat`): the features a
/// query tower can use besides the id. MovieLens 1M codes age as a bracket (1, 18, 25, …)
/// and occupation as a number; they are kept as given.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: u32,
    pub age: u32,
    pub gender: String,
    pub occupation: String,
    pub zip: String,
}

/// `Action|Comedy` → ["Action", "Comedy"]; MovieLens writes "(no genres listed)" for none.
pub(crate) fn split_genres(s: &str) -> Vec<String> {
    s.split('|')
        .map(str::trim)
        .filter(|g| !g.is_empty() && *g != "(no genres listed)")
        .map(str::to_string)
        .collect()
}
