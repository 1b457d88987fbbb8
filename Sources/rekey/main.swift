print("rekey: coming")
