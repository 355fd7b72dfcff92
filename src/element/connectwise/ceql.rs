//! CEQL `where` → ConnectWise `conditions`.
