//! Questions with defaults, for `kircd init` run by a person. Answers come
//! line by line from any reader, so that a script (or a test) can answer too;
//! secrets are read without echo when the input is a terminal.

use std::io::{self, BufRead, Write};

use secrecy::SecretString;

pub struct Prompter<R, W> {
    input: R,
    output: W,
    /// Whether `input` is the terminal, so that secrets can be read from it
    /// without echo.
    terminal: bool,
}

impl<R: BufRead, W: Write> Prompter<R, W> {
    pub fn new(input: R, output: W, terminal: bool) -> Self {
        Prompter {
            input,
            output,
            terminal,
        }
    }

    pub fn say(&mut self, text: &str) -> io::Result<()> {
        writeln!(self.output, "{text}")
    }

    fn read_line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.input.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the input ended before every question was answered",
            ));
        }
        Ok(line.trim().to_owned())
    }

    /// Asks `question`; an empty answer takes `default`. Without a default,
    /// asks again until answered.
    pub fn ask(&mut self, question: &str, default: Option<&str>) -> io::Result<String> {
        loop {
            match default {
                Some(default) if !default.is_empty() => {
                    write!(self.output, "{question} [{default}]: ")?;
                }
                _ => write!(self.output, "{question}: ")?,
            }
            self.output.flush()?;
            let answer = self.read_line()?;
            match (answer.is_empty(), default) {
                (false, _) => return Ok(answer),
                (true, Some(default)) => return Ok(default.to_owned()),
                (true, None) => self.say("  an answer is needed here")?,
            }
        }
    }

    /// Asks until the answer is one of `choices`.
    pub fn choose(
        &mut self,
        question: &str,
        choices: &[&str],
        default: &str,
    ) -> io::Result<String> {
        let question = format!("{question} ({})", choices.join(", "));
        loop {
            let answer = self.ask(&question, Some(default))?;
            if choices.contains(&answer.as_str()) {
                return Ok(answer);
            }
            self.say(&format!("  choose one of: {}", choices.join(", ")))?;
        }
    }

    pub fn confirm(&mut self, question: &str, default: bool) -> io::Result<bool> {
        let answer = self.choose(question, &["yes", "no"], if default { "yes" } else { "no" })?;
        Ok(answer == "yes")
    }

    /// Asks for a secret; an empty answer keeps `existing` (if any).
    pub fn secret(
        &mut self,
        question: &str,
        has_existing: bool,
    ) -> io::Result<Option<SecretString>> {
        let question = if has_existing {
            format!("{question} [keep the current one]: ")
        } else {
            format!("{question}: ")
        };
        loop {
            let answer = if self.terminal {
                self.output.flush()?;
                rpassword::prompt_password(&question)?
            } else {
                write!(self.output, "{question}")?;
                self.output.flush()?;
                self.read_line()?
            };
            if !answer.is_empty() {
                return Ok(Some(SecretString::from(answer)));
            }
            if has_existing {
                return Ok(None);
            }
            self.say("  an answer is needed here")?;
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn prompter(input: &str) -> Prompter<&[u8], Vec<u8>> {
        Prompter::new(input.as_bytes(), Vec::new(), false)
    }

    #[test]
    fn empty_answers_take_the_default_and_required_ones_ask_again() {
        let mut prompter = prompter("\n\nbob\n");
        assert_eq!(prompter.ask("name", Some("alice")).unwrap(), "alice");
        assert_eq!(prompter.ask("user", None).unwrap(), "bob");
        let shown = String::from_utf8(prompter.output).unwrap();
        assert_eq!(
            shown,
            "name [alice]: user:   an answer is needed here\nuser: "
        );
    }

    #[test]
    fn choices_are_enforced() {
        let mut prompter = prompter("maybe\nno\n");
        assert!(!prompter.confirm("create topics?", true).unwrap());
        assert!(
            String::from_utf8(prompter.output)
                .unwrap()
                .contains("choose one of: yes, no")
        );
    }

    #[test]
    fn secrets_can_keep_the_current_one() {
        let mut prompter = prompter("\ns3cret\n");
        assert!(prompter.secret("password", true).unwrap().is_none());
        assert_eq!(
            prompter
                .secret("password", false)
                .unwrap()
                .unwrap()
                .expose_secret(),
            "s3cret"
        );
    }

    #[test]
    fn an_ended_input_is_an_error_not_a_loop() {
        let mut prompter = prompter("");
        let err = prompter.ask("user", None).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
