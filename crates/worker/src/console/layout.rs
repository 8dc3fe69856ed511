//! The page shell every console page shares: navigation, who is logged in, the stylesheet and
//! the live-update script.

use maud::{DOCTYPE, Markup, html};

use super::Viewer;

/// A whole page: `<title>`, navigation, then `main`.
pub(crate) fn page(title: &str, viewer: &Viewer, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(csrf) = &viewer.csrf {
                    meta name="csrf-token" content=(csrf);
                }
                title { (title) " · CHUM" }
                link rel="stylesheet" href="/ui/assets/console.css";
                script src="/ui/assets/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "CHUM" }
                    nav {
                        a href="/" { "Inbox" }
                        a href="/ui/backlog" { "Backlog" }
                        a href="/ui/learning" { "Learning" }
                        a href="/ui/operations" { "Operations" }
                    }
                    div.who {
                        @match &viewer.caller {
                            Some(caller) => {
                                span #who data-role=(caller.role.name()) { (caller.name) " · " (caller.role.name()) }
                                form.inline method="post" action="/logout" {
                                    (csrf_field(viewer))
                                    button.link type="submit" { "Log out" }
                                }
                            }
                            None => {
                                @if viewer.tokens {
                                    a #login href="/login" { "Log in to decide" }
                                } @else {
                                    span.muted { "view only" }
                                }
                            }
                        }
                    }
                }
                main { (main) }
            }
        }
    }
}

/// The hidden CSRF field every state-changing form carries.
pub(crate) fn csrf_field(viewer: &Viewer) -> Markup {
    html! {
        @if let Some(csrf) = &viewer.csrf {
            input type="hidden" name="csrf" value=(csrf);
        }
    }
}

/// A note at the top of a page (what just happened).
pub(crate) fn notice(text: Option<&str>) -> Markup {
    html! {
        @if let Some(text) = text {
            div.notice.ok role="status" { (text) }
        }
    }
}
