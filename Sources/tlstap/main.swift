print("tlstap")
