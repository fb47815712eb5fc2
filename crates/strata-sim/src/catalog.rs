//! Fixed vocabularies the simulator draws from: countries and cities, platforms and devices,
//! app versions, age bands, tags, products, and the hourly activity curves. Compact world
//! records keep indexes into these tables; rows and events turn them into strings.

/// A country users live in.
#[derive(Debug)]
pub struct Country {
    /// ISO 3166-1 alpha-2 code.
    pub code: &'static str,
    /// Currency orders are paid in.
    pub currency: &'static str,
    /// Price multiplier from USD cents to this currency's minor units.
    pub price_factor: i64,
    /// Default locale.
    pub locale: &'static str,
    /// A few cities; users are spread over them.
    pub cities: [&'static str; 3],
    /// Relative share of users.
    pub weight: u32,
}

/// Countries, with their share of users.
pub const COUNTRIES: [Country; 10] = [
    Country {
        code: "US",
        currency: "USD",
        price_factor: 1,
        locale: "en-US",
        cities: ["New York", "Los Angeles", "Chicago"],
        weight: 30,
    },
    Country {
        code: "IN",
        currency: "INR",
        price_factor: 80,
        locale: "hi-IN",
        cities: ["Mumbai", "Delhi", "Bengaluru"],
        weight: 15,
    },
    Country {
        code: "BR",
        currency: "BRL",
        price_factor: 5,
        locale: "pt-BR",
        cities: ["Sao Paulo", "Rio de Janeiro", "Belo Horizonte"],
        weight: 12,
    },
    Country {
        code: "ID",
        currency: "IDR",
        price_factor: 15000,
        locale: "id-ID",
        cities: ["Jakarta", "Surabaya", "Bandung"],
        weight: 8,
    },
    Country {
        code: "GB",
        currency: "GBP",
        price_factor: 1,
        locale: "en-GB",
        cities: ["London", "Manchester", "Birmingham"],
        weight: 7,
    },
    Country {
        code: "DE",
        currency: "EUR",
        price_factor: 1,
        locale: "de-DE",
        cities: ["Berlin", "Hamburg", "Munich"],
        weight: 7,
    },
    Country {
        code: "FR",
        currency: "EUR",
        price_factor: 1,
        locale: "fr-FR",
        cities: ["Paris", "Lyon", "Marseille"],
        weight: 6,
    },
    Country {
        code: "JP",
        currency: "JPY",
        price_factor: 150,
        locale: "ja-JP",
        cities: ["Tokyo", "Osaka", "Nagoya"],
        weight: 6,
    },
    Country {
        code: "MX",
        currency: "MXN",
        price_factor: 17,
        locale: "es-MX",
        cities: ["Mexico City", "Guadalajara", "Monterrey"],
        weight: 6,
    },
    Country {
        code: "NG",
        currency: "NGN",
        price_factor: 1500,
        locale: "en-NG",
        cities: ["Lagos", "Abuja", "Kano"],
        weight: 3,
    },
];

/// A client platform and what its SDK reports.
#[derive(Debug)]
pub struct Platform {
    /// `ios`, `android` or `web`.
    pub name: &'static str,
    /// Operating system name.
    pub os: &'static str,
    /// Operating system versions.
    pub os_versions: [&'static str; 3],
    /// Device manufacturer.
    pub manufacturer: &'static str,
    /// Device models.
    pub models: [&'static str; 3],
    /// User agent sent in `context.userAgent`.
    pub user_agent: &'static str,
    /// Relative share of users.
    pub weight: u32,
}

/// Platforms, with their share of users. Web users send `page` calls, apps send `screen`.
pub const PLATFORMS: [Platform; 3] = [
    Platform {
        name: "ios",
        os: "iOS",
        os_versions: ["17.5", "18.1", "18.3"],
        manufacturer: "Apple",
        models: ["iPhone14,5", "iPhone15,2", "iPhone16,1"],
        user_agent: "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
        weight: 42,
    },
    Platform {
        name: "android",
        os: "Android",
        os_versions: ["13", "14", "15"],
        manufacturer: "Samsung",
        models: ["SM-S918B", "SM-A546B", "Pixel 8"],
        user_agent: "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
        weight: 46,
    },
    Platform {
        name: "web",
        os: "Windows",
        os_versions: ["10", "11", "11"],
        manufacturer: "",
        models: ["", "", ""],
        user_agent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        weight: 12,
    },
];

/// Index of the web platform in [`PLATFORMS`].
pub const WEB: u8 = 2;

/// App versions, oldest first, and their share among users at signup.
pub const APP_VERSIONS: [&str; 5] = ["5.0.0", "5.1.0", "5.1.1", "5.2.0", "5.2.1"];
/// Share of each entry of [`APP_VERSIONS`].
pub const APP_VERSION_WEIGHTS: [u32; 5] = [5, 10, 15, 30, 40];

/// Age bands and their shares.
pub const AGE_BANDS: [&str; 6] = ["13-17", "18-24", "25-34", "35-44", "45-54", "55+"];
/// Share of each entry of [`AGE_BANDS`].
pub const AGE_WEIGHTS: [u32; 6] = [8, 30, 30, 16, 9, 7];

/// Genders and their shares.
pub const GENDERS: [&str; 4] = ["female", "male", "nonbinary", "unspecified"];
/// Share of each entry of [`GENDERS`].
pub const GENDER_WEIGHTS: [u32; 4] = [46, 45, 3, 6];

/// Post tags, most popular first (drawn Zipf-distributed).
pub const TAGS: [&str; 32] = [
    "funny",
    "music",
    "food",
    "travel",
    "fitness",
    "fashion",
    "pets",
    "gaming",
    "art",
    "tech",
    "football",
    "beauty",
    "diy",
    "movies",
    "books",
    "nature",
    "cars",
    "dance",
    "memes",
    "science",
    "photography",
    "cooking",
    "anime",
    "family",
    "basketball",
    "news",
    "crypto",
    "gardening",
    "history",
    "coffee",
    "running",
    "design",
];

/// Kinds of post and their shares.
pub const POST_KINDS: [&str; 3] = ["photo", "video", "text"];
/// Share of each entry of [`POST_KINDS`].
pub const POST_KIND_WEIGHTS: [u32; 3] = [50, 35, 15];

/// Feeds an impression can come from, and their shares.
pub const FEEDS: [&str; 3] = ["home", "following", "explore"];
/// Share of each entry of [`FEEDS`].
pub const FEED_WEIGHTS: [u32; 3] = [60, 25, 15];

/// Where a share goes.
pub const SHARE_CHANNELS: [&str; 4] = ["copy_link", "whatsapp", "instagram", "message"];

/// Something users pay for.
#[derive(Debug)]
pub struct Product {
    /// Stable product id.
    pub sku: &'static str,
    /// `gift`, `coins` or `subscription`.
    pub kind: &'static str,
    /// Price in USD cents (converted with [`Country::price_factor`]).
    pub usd_cents: i64,
    /// Relative share of orders.
    pub weight: u32,
}

/// Products: virtual gifts, coin packs and subscriptions.
pub const PRODUCTS: [Product; 6] = [
    Product {
        sku: "gift_rose",
        kind: "gift",
        usd_cents: 99,
        weight: 40,
    },
    Product {
        sku: "gift_heart",
        kind: "gift",
        usd_cents: 199,
        weight: 20,
    },
    Product {
        sku: "gift_diamond",
        kind: "gift",
        usd_cents: 499,
        weight: 8,
    },
    Product {
        sku: "coins_500",
        kind: "coins",
        usd_cents: 499,
        weight: 17,
    },
    Product {
        sku: "plus_monthly",
        kind: "subscription",
        usd_cents: 999,
        weight: 12,
    },
    Product {
        sku: "plus_yearly",
        kind: "subscription",
        usd_cents: 7999,
        weight: 3,
    },
];

/// Relative session starts per UTC hour on weekdays: a small morning bump, lunch, and an
/// evening peak.
pub const WEEKDAY_HOURS: [u32; 24] = [
    3, 2, 1, 1, 1, 2, 4, 7, 8, 6, 5, 5, 7, 6, 5, 5, 6, 8, 10, 12, 14, 14, 11, 6,
];
/// Relative session starts per UTC hour on weekends: later mornings, a flatter day, a late
/// night.
pub const WEEKEND_HOURS: [u32; 24] = [
    6, 4, 3, 2, 1, 1, 1, 2, 4, 6, 8, 9, 9, 9, 8, 8, 8, 9, 10, 12, 13, 13, 11, 8,
];

/// Weights of a table, as a vector (for [`crate::rng::Rng::weighted`]).
pub fn country_weights() -> Vec<u32> {
    COUNTRIES.iter().map(|c| c.weight).collect()
}

/// Weights of [`PLATFORMS`].
pub fn platform_weights() -> Vec<u32> {
    PLATFORMS.iter().map(|p| p.weight).collect()
}

/// Weights of [`PRODUCTS`].
pub fn product_weights() -> Vec<u32> {
    PRODUCTS.iter().map(|p| p.weight).collect()
}
