//! The colours kirc-tui draws with, by what they mean, and `[theme]` in
//! tui.toml that changes them. A colour is a name ("cyan", "lightblue"), an
//! index of the 256-colour palette ("236") or "#rrggbb".

use std::str::FromStr;

use ratatui::style::Color;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Theme {
    /// Commands, channels, a channel's lines, titles, typing.
    pub accent: Color,
    /// What asks to be looked at: unread counts, marks, away, waiting, our
    /// own reactions.
    pub attention: Color,
    /// What is well: connected, up, online, read, complete.
    pub good: Color,
    /// What is wrong: errors, down, blocked, the unread marker.
    pub bad: Color,
    pub link: Color,
    /// What matters least: offline, pending, stale.
    pub quiet: Color,
    /// Delivered and received marks.
    pub soft: Color,
    /// The selected message's background.
    pub selection: Color,
    /// Senders' names, each actor always the same one of them.
    pub names: Vec<Color>,
}

impl Default for Theme {
    fn default() -> Self {
        Theme {
            accent: Color::Cyan,
            attention: Color::Yellow,
            good: Color::Green,
            bad: Color::Red,
            link: Color::Blue,
            quiet: Color::DarkGray,
            soft: Color::Gray,
            selection: Color::Indexed(236),
            names: vec![
                Color::Cyan,
                Color::Magenta,
                Color::Yellow,
                Color::Green,
                Color::Blue,
                Color::LightRed,
                Color::LightCyan,
                Color::LightMagenta,
                Color::LightGreen,
                Color::LightBlue,
            ],
        }
    }
}

/// The keys of `[theme]`, for the error that lists them.
const KEYS: &str = "accent, attention, good, bad, link, quiet, soft, selection (colours) and names (a list of them)";

impl Theme {
    /// A theme from `[theme]`: the defaults with what it sets; a mistake
    /// names the key and what it takes.
    pub fn from_config(table: &toml::Table) -> Result<Theme, String> {
        let mut theme = Theme::default();
        for (key, value) in table {
            let colour = || -> Result<Color, String> {
                value
                    .as_str()
                    .and_then(|text| Color::from_str(text).ok())
                    .ok_or_else(|| {
                        format!(
                            "[theme] {key} = {value}: write a colour name (\"cyan\"), a palette index (\"236\") or \"#rrggbb\""
                        )
                    })
            };
            match key.as_str() {
                "accent" => theme.accent = colour()?,
                "attention" => theme.attention = colour()?,
                "good" => theme.good = colour()?,
                "bad" => theme.bad = colour()?,
                "link" => theme.link = colour()?,
                "quiet" => theme.quiet = colour()?,
                "soft" => theme.soft = colour()?,
                "selection" => theme.selection = colour()?,
                "names" => {
                    let names = value
                        .as_array()
                        .map(|names| {
                            names
                                .iter()
                                .map(|name| {
                                    name.as_str().and_then(|text| Color::from_str(text).ok())
                                })
                                .collect::<Option<Vec<Color>>>()
                        })
                        .unwrap_or(None)
                        .filter(|names| !names.is_empty());
                    theme.names = names.ok_or_else(|| {
                        String::from(
                            "[theme] names: a list of one or more colours, e.g. [\"cyan\", \"#ff8800\"]",
                        )
                    })?;
                }
                other => {
                    return Err(format!("[theme] {other}: unknown; the keys are {KEYS}"));
                }
            }
        }
        Ok(theme)
    }

    /// A stable colour per actor, so a name looks the same everywhere.
    pub fn name_colour(&self, actor_id: &str) -> Color {
        // FNV-1a: stable across runs and machines, unlike std's hasher.
        let hash = actor_id
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            });
        let count = self.names.len().max(1) as u64;
        self.names
            .get(usize::try_from(hash % count).unwrap_or(0))
            .copied()
            .unwrap_or(Color::Reset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn theme(text: &str) -> Result<Theme, String> {
        Theme::from_config(&text.parse().unwrap())
    }

    #[test]
    fn a_theme_sets_what_it_names_and_refuses_what_it_cannot_read() {
        let set = theme(
            "accent = \"magenta\"\nselection = \"#203040\"\nbad = \"196\"\nnames = [\"white\"]\n",
        )
        .unwrap();
        assert_eq!(set.accent, Color::Magenta);
        assert_eq!(set.selection, Color::Rgb(0x20, 0x30, 0x40));
        assert_eq!(set.bad, Color::Indexed(196));
        assert_eq!(set.name_colour("anyone"), Color::White);
        assert_eq!(set.good, Theme::default().good, "the rest as before");
        for (text, says) in [
            ("accent = \"chartreuse-ish\"", "[theme] accent"),
            ("accent = 3", "[theme] accent"),
            ("names = []", "[theme] names"),
            ("names = [\"cyan\", 4]", "[theme] names"),
            ("colour = \"red\"", "[theme] colour: unknown"),
        ] {
            let err = theme(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
